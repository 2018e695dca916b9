"""`salmap attack`: saliency-guided targeted PGD (CAMERAS paper) against plain PGD."""

from __future__ import annotations

import argparse

import torch

from salmap.attack import (
    DEFAULT_EPS,
    DEFAULT_STEP,
    attack_maps,
    attack_report,
    pgd,
    saliency_methods,
)
from salmap.errors import SalmapError
from salmap.figures import save_attack_figure
from salmap.images import find_images, load_image
from salmap.io import check_output_folder, refuse_existing, write_atomically, write_json
from salmap.models import load

from .common import add_image_arguments, add_model_arguments, check_device


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="targeted PGD guided by a saliency map, against plain PGD",
        description="Targeted PGD in pixel space towards each image's least-likely class, its steps "
        "weighted by w = (map / max map) ** focus. Plain PGD (method none) always runs too, to "
        "compare perturbation norms at the same success. Writes OUT/attack.png and OUT/attack.json.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or directories")
    add_model_arguments(parser)
    parser.add_argument(
        "--method",
        default="cameras",
        help="comma-separated saliency for the weights: post-hoc methods of `salmap methods`, random "
        "or none, or all of them (default: cameras, the paper's)",
    )
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf", help="ball of the attack")
    parser.add_argument(
        "--eps",
        type=float,
        default=None,
        help="radius in [0, 1] pixel units (default: 16/255 for linf, 8 for l2)",
    )
    parser.add_argument(
        "--step-size", type=float, default=None, help="pixel units (default: 0.5/255 for linf, 0.1 for l2)"
    )
    parser.add_argument("--steps", type=int, default=200, help="most PGD iterations (default: 200)")
    parser.add_argument(
        "--focus", type=float, default=1.0, help="exponent of the map (default: 1; the paper used 50)"
    )
    parser.add_argument("--layer", default=None, help="target layer for cameras and gradcam")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random map (default: 0)")
    parser.add_argument("--out", default="salmap-attack", help="output directory (default: salmap-attack)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_image_arguments(parser)
    parser.set_defaults(run=run)


def parse_attack_methods(spec: str) -> list[str]:
    """Saliency method names from a comma-separated list or "all", with "none" first."""
    names = [n.strip().lower().replace("-", "_") for n in spec.split(",") if n.strip()]
    known = saliency_methods()
    names = known if names == ["all"] else names
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SalmapError(
            f"unknown method {', '.join(unknown) or spec!r}; choose from {', '.join(known)} or all"
        )
    return ["none", *dict.fromkeys(n for n in names if n != "none")]


def run(args: argparse.Namespace) -> int:
    methods = parse_attack_methods(args.method)
    out = check_output_folder(args.out)
    figure, numbers = out / "attack.png", out / "attack.json"
    refuse_existing([figure, numbers], args.overwrite)
    paths = find_images(args.inputs)
    loaded = load(args.model, arch=args.arch, device=check_device(args.device))
    device = next(loaded.model.parameters()).device
    x = torch.stack([loaded.preprocess(load_image(p, args.max_pixels)) for p in paths]).to(device)
    settings = {
        "norm": args.norm,
        "eps": DEFAULT_EPS[args.norm] if args.eps is None else args.eps,
        "steps": args.steps,
        "step_size": DEFAULT_STEP[args.norm] if args.step_size is None else args.step_size,
    }
    results = {}
    for method in methods:
        saliency = attack_maps(loaded.model, x, method, layer=args.layer, seed=args.seed)
        results[method] = pgd(
            loaded.model,
            x,
            saliency=saliency,
            focus=args.focus,
            mean=loaded.mean,
            std=loaded.std,
            progress=True,
            **settings,
        )
    names = [p.stem for p in paths]
    report = attack_report(results, names)
    report["settings"] = {**settings, "focus": args.focus, "model": loaded.name, "target": "least_likely"}
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(figure, lambda path: save_attack_figure(loaded, x, results, names, path))
    write_json(numbers, report)
    print(
        f"{'method':>8} {'success':>8} {'iters':>6} {'L2':>7} {'Linf':>7} {'L2/plain':>9} {'Linf/plain':>10}"
    )
    for method, row in report["aggregate"].items():
        cells = [row["mean_iterations"], row["mean_l2"], row["mean_linf"], row["l2_ratio"], row["linf_ratio"]]
        text = ["-" if v is None else f"{v:.3f}" for v in cells]
        print(
            f"{method:>8} {row['success_rate']:>8.2f} {text[0]:>6} {text[1]:>7} {text[2]:>7} "
            f"{text[3]:>9} {text[4]:>10}"
        )
    print(f"figure: {figure}\nresults: {numbers}")
    return 0
