"""`salmap explain`: saliency maps for image files."""

from __future__ import annotations

import argparse
import sys

from salmap import distributed
from salmap.explain import explain_files
from salmap.models import load
from salmap.registry import parse_methods

from .common import add_explainer_arguments, add_model_arguments, check_device, explainer_factory


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="write saliency maps for images",
        description="Write, for each image and method, OUT/<image stem>/<method>.png (overlay) and "
        ".npy (the map at the image's size), plus OUT/summary.png and OUT/results.json. "
        "Under `torchrun --nproc-per-node N` each process explains a share of the images.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or directories")
    add_model_arguments(parser)
    parser.add_argument(
        "--method", default="all", help="comma-separated methods, or all (see `salmap methods`)"
    )
    parser.add_argument(
        "--target", default=None, help="class index or name (default: each image's top-1 class)"
    )
    parser.add_argument("--out", default="salmap-output", help="output directory (default: salmap-output)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default: 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_explainer_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with distributed.session(check_device(args.device)) as device:
        loaded = load(args.model, arch=args.arch, device=str(device))
        methods = parse_methods(args.method)
        build = explainer_factory(args, loaded, methods)
        report = explain_files(
            args.inputs,
            loaded,
            {name: build(name, loaded.model) for name in methods},
            args.out,
            target=args.target,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
        )
    if report.results is None:
        return 0
    for path, reason in report.skipped:
        print(f"salmap: skipped {path}: {reason}", file=sys.stderr)
    images = len({record.image for record in report.records})
    print(f"explained {images} image(s) with {', '.join(methods)} using {loaded.name}")
    print(f"figure: {report.summary}\nresults: {report.results}")
    return 0
