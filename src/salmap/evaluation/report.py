"""Summaries of an `Evaluation`: tables (Markdown, JSON, CSV) and figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

from salmap import metrics
from salmap.boxes import draw_boxes

from .runner import Evaluation, MethodResults

COLUMNS = {
    "localisation": [
        ("le_cam", "LE, CAM rule ↓"),
        ("le_casm", "LE, CASM rule ↓"),
        ("le_graphcut", "LE, GraphCut ↓"),
        ("om_casm", "OM, CASM rule ↓"),
        ("f1", "F1 ↑"),
        ("f1a", "F1a ↑"),
        ("box_acc_held_out", "BoxAcc, held-out τ ↑"),
        ("max_box_acc", "MaxBoxAcc ↑"),
        ("pointing", "pointing ↑"),
    ],
    "evidence": [
        ("deletion", "deletion AUC ↓"),
        ("insertion", "insertion AUC ↑"),
        ("auroc", "pixel AUROC ↑"),
        ("coverage", "coverage ↑"),
        ("covers_all", "covers every object ↑"),
    ],
    "masks": [
        ("mask_mean", "mean mask"),
        ("mask_std", "std of image means"),
        ("entropy", "entropy"),
        ("total_variation", "TV"),
    ],
    "classification": [
        ("masked_in", "masked-in top-1 ↑"),
        ("masked_out", "masked-out top-1 ↓"),
        ("inpainted", "inpainted top-1 ↓"),
        ("random_masked_out", "random mask, masked-out top-1"),
    ],
    "sanity": [
        ("sanity_spearman_abs", "Spearman of abs(map), all blocks random ↓"),
        ("sanity_ssim", "SSIM, all blocks random ↓"),
    ],
}
PERCENT = {
    "le_cam",
    "le_casm",
    "le_graphcut",
    "om_casm",
    "f1",
    "f1a",
    "box_acc_held_out",
    "max_box_acc",
    "pointing",
    "coverage",
    "covers_all",
    "masked_in",
    "masked_out",
    "inpainted",
    "random_masked_out",
}


def _held_out_box_accuracy(hits: torch.Tensor) -> float:
    """BoxAcc with the threshold chosen on the other half of the images (two folds)."""
    if hits.shape[0] < 2:
        return float("nan")
    half = hits.shape[0] // 2
    folds = [(hits[:half], hits[half:]), (hits[half:], hits[:half])]
    scored = [test[:, int(choose.mean(dim=0).argmax())] for choose, test in folds]
    return float(torch.cat(scored).mean())


def summarize_method(result: MethodResults, labels: torch.Tensor) -> dict[str, float]:
    """One number per metric for a method (fractions, not percentages)."""
    summary = {name: float(result.column(name).nanmean()) for name in result.values}
    summary["pointing"] = metrics.pointing_accuracy(result.column("pointing"), labels)
    stats = metrics.MaskStatistics(
        result.column("mask_mean"), result.column("entropy"), result.column("total_variation")
    )
    summary.update(metrics.summarize_mask_statistics(stats))
    hits = torch.cat(result.box_hits)
    summary["max_box_acc"] = metrics.max_box_accuracy(hits).accuracy
    summary["box_acc_held_out"] = _held_out_box_accuracy(hits)
    for (variant, kind), values in result.classification.items():
        key = variant if kind == "map" else f"{kind}_{variant}"
        summary[key] = float(torch.cat(values).mean())
    if result.sanity is not None:
        summary["sanity_spearman_abs"] = float(result.sanity.spearman_abs[:, -1].nanmean())
        summary["sanity_ssim"] = float(result.sanity.ssim[:, -1].nanmean())
    return summary


def summarize(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    return {name: summarize_method(result, evaluation.labels) for name, result in evaluation.methods.items()}


def _cell(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if key in PERCENT else f"{value:.3f}"


def markdown_tables(summary: dict[str, dict[str, float]]) -> dict[str, str]:
    """One Markdown table per group of metrics, one row per method (percentages where marked)."""
    tables = {}
    for group, columns in COLUMNS.items():
        present = [(key, title) for key, title in columns if any(key in row for row in summary.values())]
        if not present:
            continue
        lines = ["| method | " + " | ".join(title for _, title in present) + " |"]
        lines.append("|---" * (len(present) + 1) + "|")
        for method, row in summary.items():
            lines.append(f"| {method} | " + " | ".join(_cell(key, row.get(key)) for key, _ in present) + " |")
        tables[group] = "\n".join(lines)
    return tables


def reference_rows(evaluation: Evaluation) -> str:
    """Masked-image accuracy of the trivial masks (all zero, all one), the reference rows."""
    first = next(iter(evaluation.methods.values()))
    lines = ["| mask | masked-in top-1 | masked-out top-1 | inpainted top-1 |", "|---|---|---|---|"]
    for kind in ("zeros", "ones"):
        cells = [
            _cell("masked_in", float(torch.cat(first.classification[(variant, kind)]).mean()))
            for variant in ("masked_in", "masked_out", "inpainted")
        ]
        lines.append(f"| all {'zero' if kind == 'zeros' else 'one'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_gallery(evaluation: Evaluation, path: Path) -> None:
    """Images x methods: the map over the image, ground-truth boxes green, CASM-rule box red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    methods = list(evaluation.methods)
    rows = len(evaluation.gallery_pixels)
    figure, axes = plt.subplots(
        rows, len(methods) + 1, figsize=(1.9 * (len(methods) + 1), 1.9 * rows), squeeze=False
    )
    for r in range(rows):
        pixels = evaluation.gallery_pixels[r]
        axes[r][0].imshow(draw_boxes(pixels, evaluation.gallery_boxes[r]))
        for c, method in enumerate(methods, start=1):
            maps, boxes = (
                torch.cat(parts) for parts in zip(*evaluation.methods[method].gallery, strict=True)
            )
            heat = colormaps["inferno"](maps[r].numpy())[..., :3]
            blend = 0.45 * pixels.permute(1, 2, 0).numpy() + 0.55 * heat
            picture = draw_boxes(
                torch.from_numpy(blend).permute(2, 0, 1).float(), evaluation.gallery_boxes[r]
            )
            axes[r][c].imshow(draw_boxes(picture, boxes[r : r + 1], colors=((255, 0, 0),)))
            if r == 0:
                axes[r][c].set_title(method, fontsize=9)
        axes[0][0].set_title("image", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_curves(evaluation: Evaluation, path: Path) -> None:
    """Mean deletion and insertion curves of every method."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    count = len(evaluation.labels)
    for method, result in evaluation.methods.items():
        for axis, name in zip(axes, ("deletion", "insertion"), strict=True):
            curve = getattr(result, f"{name}_curve") / count
            axis.plot(result.fractions.numpy(), curve.numpy(), label=method)
    for axis, name in zip(axes, ("deletion (lower is better)", "insertion (higher is better)"), strict=True):
        axis.set_title(name)
        axis.set_xlabel("fraction of pixels changed")
        axis.set_ylabel("probability of the class")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_outputs(
    evaluation: Evaluation, out: Path, title: str, seconds: float
) -> tuple[dict[str, dict[str, float]], str]:
    """Write report.md, metrics.json, metrics.csv, gallery.png, curves.png and sanity.png; return
    the summary and the report text."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(evaluation)
    accuracy = float((evaluation.predictions == evaluation.labels).float().mean())
    tables = markdown_tables(summary)
    heading = {
        "localisation": "Localisation (percent; LE/OM: IoU > 0.5 with a ground-truth box)",
        "evidence": "Faithfulness and evidence",
        "masks": "Mask statistics (continuous maps)",
        "classification": "Classification of masked images by the model (percent, discretised maps, "
        "b = m >= mean(m))",
        "sanity": "Sanity check (cascading randomisation, from the logits down)",
    }
    parts = [
        f"# {title}",
        "",
        f"Data: `{evaluation.source.name}`, {len(evaluation.labels)} images. "
        f"Model: `{evaluation.model_name}` (top-1 accuracy {100 * accuracy:.1f}%). "
        f"Maps explain the ground-truth class. Wall time {seconds:.0f} s.",
        "",
        "Box rules are fixed (CAM: largest region above 20% of the max; CASM: m >= mean(m), largest "
        "4-connected component; GraphCut: seeds above the 95th / below the 30th percentile). BoxAcc "
        "chooses its threshold on the other half of the images (two folds); MaxBoxAcc takes the best "
        "threshold on the images it scores, an upper bound (Choe et al. 2020). Removed pixels (deletion, "
        f"masked images) take the value {evaluation.source.fill:.3f} in normalised space.",
    ]
    for group, table in tables.items():
        parts += ["", f"## {heading[group]}", "", table]
        if group == "classification":
            parts += ["", "Reference rows:", "", reference_rows(evaluation)]
    parts += [
        "",
        "Figures: `gallery.png` (green: ground truth, red: CASM-rule box), `curves.png`, `sanity.png`.",
    ]
    text = "\n".join(parts) + "\n"
    (out / "report.md").write_text(text)
    document = {
        "data": evaluation.source.name,
        "model": evaluation.model_name,
        "images": len(evaluation.labels),
        "accuracy": accuracy,
        "seconds": seconds,
        "methods": summary,
    }
    (out / "metrics.json").write_text(json.dumps(document, indent=2, allow_nan=True))
    keys = sorted({key for row in summary.values() for key in row})
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", *keys])
        for method, row in summary.items():
            writer.writerow([method, *(row.get(key, "") for key in keys)])
    write_gallery(evaluation, out / "gallery.png")
    write_curves(evaluation, out / "curves.png")
    sanity = {m: r.sanity for m, r in evaluation.methods.items() if r.sanity is not None}
    if sanity:
        metrics.plot_sanity(sanity, out / "sanity.png")
    return summary, text
