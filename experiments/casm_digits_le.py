"""LE / OM / F1 of CASM, the Baseline and Grad-CAM on the cluttered digits test set.

Usage: python experiments/casm_digits_le.py [CASM.pt] [BASELINE.pt] [--n 1000] [--seed 0]
(default: the checkpoints shipped in salmap/weights). Boxes by both fixed rules: the CASM rule
(the authors' binarisation, the binary area equal to the mask's mean, largest 4-connected
component) and the CAM rule (20% of the max, largest 8-connected component); no threshold is
tuned on the test set. The mappers are scored on their raw masks. Grad-CAM explains the shipped
digits CNN (the f(0) both mappers started from); a mapper's OM uses its own classifier.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from salmap import GradCAM
from salmap.boxes import cam_rule_boxes, casm_rule_boxes
from salmap.casm import CASM, Baseline
from salmap.data.digits import build_split
from salmap.metrics import box_f1, localization_error, official_metric_error
from salmap.models.digits import load_digits_cnn

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "salmap" / "weights"


def evaluate(maps: torch.Tensor, logits: torch.Tensor, data) -> dict[str, float]:
    boxes = data.boxes
    result = {}
    for rule, make in (("casm_rule", casm_rule_boxes), ("cam_rule", cam_rule_boxes)):
        predicted = make(maps)
        result[f"LE_{rule}"] = 100 * float(localization_error(predicted, boxes).mean())
        om = official_metric_error(predicted, boxes, logits.argmax(1), data.labels)
        result[f"OM_{rule}"] = 100 * float(om.mean())
    result["F1"] = 100 * float(box_f1(maps, boxes).f1.mean())
    result["mask_mean"] = float(maps.mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("casm", nargs="?", default=str(WEIGHTS / "casm_digits.pt"))
    parser.add_argument("baseline", nargs="?", default=str(WEIGHTS / "baseline_digits.pt"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = build_split("test", args.n, seed=args.seed)
    x = data.images
    rows = {}
    for name, explainer in (
        ("CASM", CASM.from_checkpoint(args.casm)),
        ("Baseline", Baseline.from_checkpoint(args.baseline)),
    ):
        chunks = [explainer.with_prediction(part, normalize=False) for part in x.split(250)]
        maps = torch.cat([c.maps for c in chunks])
        logits = torch.cat([c.logits for c in chunks])
        rows[name] = evaluate(maps, logits, data)
    model = load_digits_cnn().model
    with torch.no_grad():
        logits = torch.cat([model(part) for part in x.split(250)])
    gradcam = GradCAM(model)
    maps = torch.cat([gradcam(part) for part in x.split(250)])
    rows["Grad-CAM"] = evaluate(maps, logits, data)
    print(f"digits test split, n={args.n}, seed={args.seed} (LE, OM, F1 in %; lower LE/OM is better)")
    keys = list(next(iter(rows.values())))
    print(f"{'method':10s} " + " ".join(f"{k:>13s}" for k in keys))
    for name, row in rows.items():
        print(f"{name:10s} " + " ".join(f"{row[k]:13.2f}" for k in keys))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
