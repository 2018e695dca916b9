"""Part 4 of the CASM issue in miniature: the paper's findings (Zolna et al. 2019) on the cluttered digits.

Usage (one torch thread; the checkpoints come from `experiments/casm_runs.py`):

    OMP_NUM_THREADS=1 python experiments/reproduce_casm.py \
        --casm CASM.pt --baseline BASELINE.pt \
        --table2 F=F.pt L=L.pt FL=FL.pt L100=L100.pt L1000=L1000.pt "L100 score C=C.pt" \
                 "L100 separate encoder=SEP.pt" \
        --unseen UNSEEN.pt --unseen-reference L100_ALL_CLASSES.pt \
        --classifier seed1=DIGITS_CNN_SEED1.pt --n 300 --notes NOTES.json

writes `experiments/results/casm_reproduction.md` and `casm_reproduction.json`:

- Table 1: LE / OM / F1 of CASM, Baseline, Gradient, SmoothGrad, Grad-CAM and CAMERAS. Every map
  explains the ground-truth class; the post-hoc methods explain the shipped digits CNN (f(0), which
  is also the Baseline's frozen classifier); OM uses the shipped CNN's top-1 for every method.
  Boxes by two fixed rules, none tuned on the test set: the CASM rule (map >= its mean, largest
  4-connected component) and the CAM rule (20% of the max, largest 8-connected component).
- Table 2: the same metrics for short runs that differ in one setting (thinning, score, encoder).
- Mask statistics of the raw masks m(x) in [0, 1] of CASM and the Baseline (the post-hoc maps,
  min-max scaled, only for reference).
- Classification of masked-in / masked-out / inpainted images (binary masks: map >= its mean) by
  the shipped CNN, independently trained CNNs and the mappers' own classifiers, with the trivial
  masks (all zero, all one, random of the same area) as reference rows. Two fills: the black
  background (what the digits preset trains with) and zero in normalised space (the paper's
  definition, a faint grey lift here; `salmap.metrics.masked_classification`).
- Unseen classes: a mapper trained on digits 0-4, LE on seen (0-4) and unseen (5-9) test digits.
- Twin evidence: on `twin` images (two copies of the digit), the fraction of images whose binary
  mask covers at least half of each copy (`object_coverage` / `covers_all`), for every method.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from salmap.boxes import cam_rule_boxes, casm_rule_boxes
from salmap.casm import CASM
from salmap.data.digits import DIGITS_MEAN, DIGITS_STD, build_split
from salmap.masks import discretize, masked_out
from salmap.metrics import (
    box_f1,
    covers_all,
    localization_error,
    mask_statistics,
    masked_classification,
    object_coverage,
    official_metric_error,
)
from salmap.metrics.classification import classify
from salmap.metrics.statistics import summarize_mask_statistics
from salmap.models.digits import load_digits_cnn
from salmap.registry import make_explainer

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "src" / "salmap" / "weights"
POSTHOC = ("gradient", "smoothgrad", "gradcam", "cameras")
NAMES = {
    "casm": "CASM",
    "baseline": "Baseline",
    "gradient": "Gradient",
    "smoothgrad": "SmoothGrad",
    "gradcam": "Grad-CAM",
    "cameras": "CAMERAS",
}
BLACK = -DIGITS_MEAN[0] / DIGITS_STD[0]
CHUNK = 100
VARIANT_COLUMNS = [
    "masked-in (black)",
    "masked-out (black)",
    "masked-out (grey: 0 normalised)",
    "inpainted",
]


def load_mapper(path: str | Path) -> CASM:
    """Any CASM checkpoint (training or inference format, any thinning) as an explainer."""
    return CASM.from_checkpoint(path)


class Maps:
    """Normalised maps (what `salmap evaluate` scores), raw maps and the explained model's logits."""

    def __init__(self, maps: torch.Tensor, raw: torch.Tensor, logits: torch.Tensor, seconds: float):
        self.maps, self.raw, self.logits, self.seconds = maps, raw, logits, seconds


def compute_maps(method: str, x: torch.Tensor, y: torch.Tensor, model, mappers: dict) -> Maps:
    started = time.perf_counter()
    if method in mappers:
        explainer = mappers[method]
        parts = [explainer.with_prediction(part, normalize=False) for part in x.split(CHUNK)]
        raw = torch.cat([p.maps for p in parts])
        logits = torch.cat([p.logits for p in parts])
        maps = torch.cat(
            [explainer(part, target) for part, target in zip(x.split(CHUNK), y.split(CHUNK), strict=True)]
        )
    else:
        explainer = make_explainer(method, model)
        maps = torch.cat(
            [explainer(part, target) for part, target in zip(x.split(CHUNK), y.split(CHUNK), strict=True)]
        )
        raw = maps
        with torch.no_grad():
            logits = torch.cat([model(part) for part in x.split(CHUNK)])
    return Maps(maps, raw, logits, time.perf_counter() - started)


def box_metrics(maps: torch.Tensor, data, predicted: torch.Tensor) -> dict[str, float]:
    """LE and OM (two box rules), F1 and F1a, in %."""
    row = {}
    for rule, make in (("casm", casm_rule_boxes), ("cam", cam_rule_boxes)):
        boxes = make(maps)
        row[f"LE_{rule}_rule"] = 100 * float(localization_error(boxes, data.boxes).mean())
        om = official_metric_error(boxes, data.boxes, predicted, data.labels)
        row[f"OM_{rule}_rule"] = 100 * float(om.mean())
    f1 = box_f1(maps, data.boxes)
    row["F1"] = 100 * float(f1.f1.mean())
    row["F1a"] = 100 * float(f1.f1a.mean())
    return row


def classification_rows(
    x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, classifiers: dict, seed: int
) -> dict[str, dict[str, float]]:
    """Top-1 accuracy (%) of every classifier on masked-in / masked-out (black fill), masked-out
    (zero in normalised space) and inpainted masked-out images; keys `variant|mask kind`."""
    rows: dict[str, dict[str, float]] = {}
    table = masked_classification(
        classifiers,
        x,
        masks,
        y,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        variants=("masked_out", "inpainted"),
        seed=seed,
    )
    black = masked_classification(
        classifiers, x, masks, y, variants=("masked_in", "masked_out"), seed=seed, fill=BLACK
    )
    labels = {
        "masked_out": "masked-out (grey: 0 normalised)",
        "inpainted": "inpainted",
    }
    black_labels = {"masked_in": "masked-in (black)", "masked_out": "masked-out (black)"}
    for results, names in ((table, labels), (black, black_labels)):
        for (name, variant, kind), predictions in results.items():
            rows.setdefault(f"{names[variant]}|{kind}", {})[name] = 100 * float(predictions.top1.mean())
    return rows


def twin_coverage(maps: torch.Tensor, objects: torch.Tensor) -> dict[str, float]:
    coverage = object_coverage(discretize(maps), objects)
    both = covers_all(coverage)
    one = torch.stack([(c >= 0.5).any() for c in coverage]).float()
    return {
        "covers_both": 100 * float(both.mean()),
        "covers_both_80": 100 * float(covers_all(coverage, 0.8).mean()),
        "min_copy_coverage": 100 * float(torch.stack([c.min() for c in coverage]).mean()),
        "covers_at_least_one": 100 * float(one.mean()),
        "mean_coverage": 100 * float(torch.stack([c.mean() for c in coverage]).mean()),
        "mask_area": 100 * float(discretize(maps).float().mean()),
    }


PRECISE = {"mask_mean", "mask_std", "entropy", "total_variation"}


def fmt(value, precise: bool = False) -> str:
    if isinstance(value, float) and precise:
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: dict[str, dict], columns: list[str], first: str = "method") -> str:
    lines = [
        "| " + " | ".join([first, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, row in rows.items():
        lines.append("| " + " | ".join([name, *(fmt(row.get(c, ""), c in PRECISE) for c in columns)]) + " |")
    return "\n".join(lines)


def parse_pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        label, _, path = item.rpartition("=")
        if not label:
            raise SystemExit(f"expected LABEL=PATH, got {item!r}")
        pairs[label] = path
    return pairs


def checkpoint_info(path: str | Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state.get("config", {})
    return {
        "path": str(path),
        "step": int(state.get("step", 0)),
        "thinning": config.get("thinning"),
        "score": config.get("score"),
        "share_encoder": config.get("share_encoder"),
        "seed": config.get("seed"),
        "area_weight": config.get("area_weight"),
        "classes": config.get("digits_classes"),
        "train_samples": config.get("digits_samples"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--casm", default=str(WEIGHTS / "casm_digits.pt"))
    parser.add_argument("--baseline", default=str(WEIGHTS / "baseline_digits.pt"))
    parser.add_argument("--table2", nargs="*", default=[], help="LABEL=CHECKPOINT, one per ablation row")
    parser.add_argument("--seeds", nargs="*", default=[], help="LABEL=CHECKPOINT, extra training seeds")
    parser.add_argument("--unseen", default=None, help="a mapper trained on digits 0-4")
    parser.add_argument("--unseen-reference", default=None, help="same settings, trained on all digits")
    parser.add_argument("--classifier", nargs="*", default=[], help="NAME=DIGITS_CNN_CHECKPOINT")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="test-set seed")
    parser.add_argument("--notes", default=None, help="JSON with training wall times and remarks")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the report from --out's JSON with --notes, no compute",
    )
    args = parser.parse_args()
    if args.render_only:
        saved = args.out / "casm_reproduction.json"
        report = json.loads(saved.read_text())
        if args.notes:
            report["notes"] = json.loads(Path(args.notes).read_text())
        saved.write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "casm_reproduction.md").write_text(render(report))
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.perf_counter()

    shipped = load_digits_cnn().model.eval()
    mappers = {"casm": load_mapper(args.casm), "baseline": load_mapper(args.baseline)}
    if mappers["baseline"].info.get("thinning") != "F":
        raise SystemExit(f"{args.baseline} was not trained with thinning F")
    data = build_split("test", args.n, seed=args.seed)
    x, y = data.images, data.labels
    with torch.no_grad():
        shipped_pred = torch.cat([shipped(part) for part in x.split(CHUNK)]).argmax(1)
    report: dict = {
        "settings": {
            "n": args.n,
            "test_seed": args.seed,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "casm": checkpoint_info(args.casm),
            "baseline": checkpoint_info(args.baseline),
        }
    }

    # Table 1 and mask statistics.
    table1, stats, all_maps = {}, {}, {}
    for method in ("casm", "baseline", *POSTHOC):
        result = compute_maps(method, x, y, shipped, mappers)
        all_maps[method] = result
        row = box_metrics(result.maps, data, shipped_pred)
        if method in mappers:
            own = result.logits.argmax(1)
            row["own_f_accuracy"] = 100 * float((own == y).float().mean())
            row["OM_casm_rule_own_f"] = 100 * float(
                official_metric_error(casm_rule_boxes(result.maps), data.boxes, own, y).mean()
            )
        row["ms_per_image"] = 1000 * result.seconds / len(y)
        table1[NAMES[method]] = row
        source = result.raw if method in mappers else result.maps
        stats[NAMES[method] + ("" if method in mappers else " (min-max scaled)")] = summarize_mask_statistics(
            mask_statistics(source)
        )
    report["shipped_classifier_accuracy"] = 100 * float((shipped_pred == y).float().mean())
    report["table1"] = table1
    report["mask_statistics"] = stats

    # Extra training seeds of CASM and the Baseline.
    seed_rows = {}
    for label, path in parse_pairs(args.seeds).items():
        result = compute_maps("extra", x, y, shipped, {"extra": load_mapper(path)})
        seed_rows[label] = {
            **box_metrics(result.maps, data, shipped_pred),
            **summarize_mask_statistics(mask_statistics(result.raw)),
            "step": checkpoint_info(path)["step"],
            "seed": checkpoint_info(path)["seed"],
        }
    report["seeds"] = seed_rows

    # Table 2.
    table2 = {}
    for label, path in parse_pairs(args.table2).items():
        mapper = load_mapper(path)
        result = compute_maps("ablation", x, y, shipped, {"ablation": mapper})
        info = checkpoint_info(path)
        masks = discretize(result.maps)
        with torch.no_grad():
            out_logits = torch.cat([shipped(part) for part in masked_out(x, masks, BLACK).split(CHUNK)])
        table2[label] = {
            **box_metrics(result.maps, data, shipped_pred),
            "mask_mean": float(result.raw.mean()),
            "own_f_accuracy": 100 * float((result.logits.argmax(1) == y).float().mean()),
            "masked_out_acc_shipped": 100 * float((out_logits.argmax(1) == y).float().mean()),
            "steps": info["step"],
            "lambda": info["area_weight"],
            "thinning": info["thinning"],
            "score": info["score"],
            "shared_encoder": info["share_encoder"],
        }
    report["table2"] = table2

    # Classification of masked images by several classifiers.
    classifiers = {"shipped CNN": shipped}
    for name, path in parse_pairs(args.classifier).items():
        classifiers[f"CNN {name}"] = load_digits_cnn(path).model.eval()
    classifiers["CASM's own f"] = mappers["casm"].model.eval()
    accuracy = {name: 100 * float(classify(model, x, y).top1.mean()) for name, model in classifiers.items()}
    classification: dict[str, dict[str, dict[str, float]]] = {name: {} for name in classifiers}
    for method in ("casm", "baseline", *POSTHOC):
        rows = classification_rows(x, y, discretize(all_maps[method].maps), classifiers, args.seed)
        for key, row in rows.items():
            variant, kind = key.split("|")
            if kind == "map":
                label = NAMES[method]
            elif method == "casm":
                label = {
                    "zeros": "reference: all-zero mask",
                    "ones": "reference: all-one mask",
                    "random": "reference: random mask, area of CASM's",
                }[kind]
            else:
                continue
            for name, value in row.items():
                classification[name].setdefault(label, {})[variant] = value
    report["classifier_clean_accuracy"] = accuracy
    report["classification"] = classification

    # Unseen classes.
    unseen = {}
    if args.unseen:
        seen_data = build_split("test", args.n // 2, seed=args.seed, classes=range(5))
        unseen_data = build_split("test", args.n // 2, seed=args.seed, classes=range(5, 10))
        candidates = {"trained on 0-4": args.unseen}
        if args.unseen_reference:
            candidates["trained on 0-9 (same steps)"] = args.unseen_reference
        for label, path in candidates.items():
            mapper = load_mapper(path)
            for part, subset in (("seen 0-4", seen_data), ("unseen 5-9", unseen_data)):
                result = compute_maps("m", subset.images, subset.labels, shipped, {"m": mapper})
                with torch.no_grad():
                    pred = shipped(subset.images).argmax(1)
                row = box_metrics(result.maps, subset, pred)
                row["mask_mean"] = float(result.raw.mean())
                row["own_f_accuracy"] = 100 * float((result.logits.argmax(1) == subset.labels).float().mean())
                unseen[f"{label}, test digits {part}"] = row
            unseen[f"{label}, test digits seen 0-4"]["steps"] = checkpoint_info(path)["step"]
        gradcam = make_explainer("gradcam", shipped)
        for part, subset in (("seen 0-4", seen_data), ("unseen 5-9", unseen_data)):
            with torch.no_grad():
                pred = shipped(subset.images).argmax(1)
            maps = gradcam(subset.images, subset.labels)
            unseen[f"Grad-CAM (reference), test digits {part}"] = box_metrics(maps, subset, pred)
    report["unseen"] = unseen

    # Twin evidence.
    twin = build_split("test", args.n, variant="twin", seed=args.seed)
    twin_rows = {}
    for method in ("casm", "baseline", *POSTHOC):
        result = compute_maps(method, twin.images, twin.labels, shipped, mappers)
        twin_rows[NAMES[method]] = twin_coverage(result.maps, twin.masks)
    report["twin"] = twin_rows
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.notes:
        report["notes"] = json.loads(Path(args.notes).read_text())

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "casm_reproduction.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "casm_reproduction.md").write_text(render(report))
    print(render(report))


def render(report: dict) -> str:
    s = report["settings"]
    out = [
        "# CASM on the cluttered digits: the paper's findings in miniature",
        "",
        f"Test split `digits:single`, n={s['n']}, test seed {s['test_seed']} (twin: `digits:twin`, "
        f"same n and seed); torch {s['torch']}, {s['threads']} thread. Written by "
        "`experiments/reproduce_casm.py` (command and training runs below). All numbers in %, "
        "lower LE / OM is better, higher F1 is better. Shipped digits CNN accuracy on this test set: "
        f"{report['shipped_classifier_accuracy']:.1f}%.",
        "",
        f"- CASM checkpoint: `{s['casm']['path']}` (thinning {s['casm']['thinning']}, score "
        f"{s['casm']['score']}, {s['casm']['step']} steps, training seed {s['casm']['seed']})",
        f"- Baseline checkpoint: `{s['baseline']['path']}` (thinning {s['baseline']['thinning']}, "
        f"{s['baseline']['step']} steps, training seed {s['baseline']['seed']})",
        "",
        "## Table 1 in miniature (paper, ImageNet: CASM 36.1 LE, Baseline 53.5, gradient 41.7)",
        "",
        "Every map explains the ground-truth class. The post-hoc methods explain the shipped digits CNN "
        "(the f(0) of both mappers and the Baseline's frozen classifier); OM uses the shipped CNN's "
        "top-1 for every row; `OM own f` uses the mapper's own classifier (CASM fine-tunes f). "
        "Box rules fixed in advance (none tuned on the test set): CASM rule = map >= its mean, "
        "largest 4-connected component; CAM rule = 20% of the max, largest 8-connected component.",
        "",
        markdown_table(
            report["table1"],
            [
                "LE_casm_rule",
                "LE_cam_rule",
                "OM_casm_rule",
                "OM_cam_rule",
                "F1",
                "F1a",
                "OM_casm_rule_own_f",
                "own_f_accuracy",
                "ms_per_image",
            ],
        ),
        "",
    ]
    if report.get("seeds"):
        out += [
            "### Other training seeds (same settings, test set as above)",
            "",
            markdown_table(
                report["seeds"],
                [
                    "seed",
                    "step",
                    "LE_casm_rule",
                    "LE_cam_rule",
                    "F1",
                    "mask_mean",
                    "entropy",
                    "total_variation",
                ],
                "run",
            ),
            "",
        ]
    if report.get("table2"):
        out += [
            "## Table 2 in miniature (ablations, short runs of equal length)",
            "",
            "Each row is one run of the `digits` preset from the shipped CNN, training seed 0, "
            "differing from the L100 row in one setting only; lambda empty = the authors' value for "
            "the strategy (F 2.5, L 14, FL 7.5, L100 / L1000 10). `masked-out acc` = shipped CNN's "
            "accuracy on the images with the binary mask set to the black background.",
            "",
            markdown_table(
                report["table2"],
                [
                    "steps",
                    "thinning",
                    "score",
                    "shared_encoder",
                    "LE_casm_rule",
                    "LE_cam_rule",
                    "OM_casm_rule",
                    "F1",
                    "mask_mean",
                    "own_f_accuracy",
                    "masked_out_acc_shipped",
                ],
                "run",
            ),
            "",
        ]
    out += [
        "## Mask statistics",
        "",
        "Raw masks m(x) in [0, 1] for CASM and the Baseline; `mask_std` = std across images of the "
        "per-image mask mean (the paper's std of the masked-out volume); entropy = mean over pixels of "
        "-m log2 m; TV = mean squared horizontal plus vertical differences. Post-hoc maps are min-max "
        "scaled per image and only listed for reference.",
        "",
        markdown_table(report["mask_statistics"], ["mask_mean", "mask_std", "entropy", "total_variation"]),
        "",
        "## Classification of masked images",
        "",
        "Top-1 accuracy (%) of each classifier. Binary masks: map >= its per-image mean. For masked-in "
        "images higher is better, for masked-out and inpainted masked-out images lower is better. "
        "Clean accuracy: "
        + ", ".join(f"{k} {v:.1f}" for k, v in report["classifier_clean_accuracy"].items())
        + ".",
        "",
    ]
    for name, rows in report["classification"].items():
        out += [f"**{name}**", "", markdown_table(rows, VARIANT_COLUMNS, "mask"), ""]
    out += [
        "The all-one mask's inpainted row is not meaningful: `salmap.masks.inpaint_masked_out` returns "
        "the image unchanged when every pixel is a hole (OpenCV has no known pixel to fill from).",
        "",
    ]
    if report.get("unseen"):
        out += [
            "## Unseen classes",
            "",
            "The mapper trained on images whose evidence digit is 0-4 (f(0) is the shipped CNN, which "
            "has seen all ten digits: only the mapper and f's fine-tuning are restricted), and the "
            "same settings trained on all digits for the same number of steps, on test images "
            f"with evidence 0-4 and 5-9 (n={report['settings']['n'] // 2} each).",
            "",
            markdown_table(
                report["unseen"],
                ["steps", "LE_casm_rule", "LE_cam_rule", "OM_casm_rule", "F1", "mask_mean", "own_f_accuracy"],
                "run",
            ),
            "",
        ]
    out += [
        "## Twin evidence",
        "",
        "`digits:twin`: two copies of the class digit among clutter. `covers_both` = binary mask "
        "(map >= its mean) holds at least half of each copy's stroke pixels (`covers_all`); "
        "`covers_both_80` the same with 80%; `covers_at_least_one` half of one copy; `min_copy_coverage` = "
        "mean over images of the less covered copy's fraction; mean_coverage = mean over copies of the "
        "covered fraction; mask_area = binary mask area.",
        "",
        markdown_table(
            report["twin"],
            [
                "covers_both",
                "covers_both_80",
                "covers_at_least_one",
                "min_copy_coverage",
                "mean_coverage",
                "mask_area",
            ],
        ),
        "",
    ]
    notes = report.get("notes")
    if notes:
        out += ["## Runs, wall times and comparison with the paper", ""]
        for key, value in notes.items():
            if isinstance(value, list):
                out.append(f"**{key}**")
                out.append("")
                out += [f"- {item}" for item in value]
                out.append("")
            else:
                out += [f"**{key}**: {value}", ""]
    out.append(f"Evaluation wall time: {report['seconds']:.0f} s.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
