"""`salmap visualize-class`: class model visualisation (Simonyan et al. 2013) as a PNG grid."""

from __future__ import annotations

import argparse

from salmap.errors import SalmapError
from salmap.io import check_output_file, refuse_existing, write_atomically
from salmap.models import load

from .common import add_model_arguments, check_device


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize-class",
        help="the image a model finds most typical of a class",
        description="Gradient ascent on the pre-softmax class score minus l2 * ||I||^2 from the zero "
        "(mean) image, Simonyan et al. 2013. The defaults are the plain paper mode; --jitter, "
        "--blur-every, --decay and --clip add the usual regularisers for a recognisable picture.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--class", dest="classes", required=True, metavar="CLASS[,CLASS...]", help="class indices or names"
    )
    parser.add_argument("--steps", type=int, default=200, help="gradient ascent steps (default: 200)")
    parser.add_argument("--lr", type=float, default=1.0, help="step size (default: 1.0)")
    parser.add_argument("--l2", type=float, default=1e-3, help="weight lambda of ||I||^2 (default: 0.001)")
    parser.add_argument("--jitter", type=int, default=0, help="random roll of up to N pixels per step")
    parser.add_argument("--blur-every", type=int, default=0, help="Gaussian blur every N steps (0: never)")
    parser.add_argument("--blur-sigma", type=float, default=0.5, help="blur sigma in pixels (default: 0.5)")
    parser.add_argument("--decay", type=float, default=1.0, help="step size factor per step (default: 1)")
    parser.add_argument("--clip", action="store_true", help="keep the image in the valid pixel range")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter (default: 0)")
    parser.add_argument("--out", default="class_models.png", help="PNG file (default: class_models.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from salmap.class_models import visualize_class
    from salmap.figures import save_class_grid

    out = check_output_file(args.out)
    refuse_existing([out], args.overwrite)
    labels = [label.strip() for label in args.classes.split(",") if label.strip()]
    if not labels:
        raise SalmapError("--class needs at least one class index or name")
    loaded = load(args.model, arch=args.arch, device=check_device(args.device))
    classes = [loaded.class_index(label) for label in labels]
    result = visualize_class(
        loaded.model,
        classes,
        steps=args.steps,
        lr=args.lr,
        l2=args.l2,
        input_size=loaded.input_size,
        mean=loaded.mean,
        std=loaded.std,
        jitter=args.jitter,
        blur_every=args.blur_every,
        blur_sigma=args.blur_sigma,
        decay=args.decay,
        clip=args.clip,
        seed=args.seed,
    )
    names = [loaded.class_names[c] for c in classes]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, lambda path: save_class_grid(result, names, path))
    for name, score, probability in zip(names, result.scores, result.probabilities, strict=True):
        print(f"{name:>24}: score {float(score):.2f}, probability {float(probability):.3f}")
    print(f"figure: {out}")
    return 0
