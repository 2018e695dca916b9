"""LE / F1 of CASM checkpoints on a held-out split (default `val`), to choose which to ship without
looking at the test set. Boxes by the CASM rule (the authors' binarisation) and the CAM rule; the
mappers are scored on their raw masks.

Usage: OMP_NUM_THREADS=1 python experiments/select_casm_checkpoint.py CKPT [CKPT ...] [--split val] [--n 300]
Prints one line per checkpoint (and Grad-CAM of the shipped digits CNN for reference) and a JSON dump.
"""

from __future__ import annotations

import argparse
import json

import torch

from salmap import GradCAM
from salmap.boxes import cam_rule_boxes, casm_rule_boxes
from salmap.casm import CASM
from salmap.data.digits import build_split
from salmap.metrics import box_f1, localization_error
from salmap.models.digits import load_digits_cnn


def scores(maps: torch.Tensor, data) -> dict[str, float]:
    return {
        "LE_casm_rule": 100 * float(localization_error(casm_rule_boxes(maps), data.boxes).mean()),
        "LE_cam_rule": 100 * float(localization_error(cam_rule_boxes(maps), data.boxes).mean()),
        "F1": 100 * float(box_f1(maps, data.boxes).f1.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = build_split(args.split, args.n, seed=args.seed)
    rows = {}
    model = load_digits_cnn().model
    rows["Grad-CAM"] = scores(torch.cat([GradCAM(model)(p) for p in data.images.split(100)]), data)
    for path in args.checkpoints:
        explainer = CASM.from_checkpoint(path)
        maps = torch.cat([explainer(part, normalize=False) for part in data.images.split(100)])
        rows[path] = {
            **scores(maps, data),
            "step": explainer.info["step"],
            "thinning": explainer.info["thinning"],
        }
    for name, row in rows.items():
        print(
            f"{name:50s} "
            + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
    print(json.dumps({"split": args.split, "n": args.n, "seed": args.seed, "rows": rows}))


if __name__ == "__main__":
    main()
