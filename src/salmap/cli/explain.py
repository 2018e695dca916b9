"""`salmap explain`: saliency maps for image files."""

from __future__ import annotations

import argparse
import sys

from salmap import distributed
from salmap.explain import explain_files
from salmap.io import check_output_folder
from salmap.models import load
from salmap.registry import parse_methods

from .common import (
    add_explainer_arguments,
    add_image_arguments,
    add_model_arguments,
    check_cost,
    check_device,
    explainer_factory,
    prepare_explainers,
    show,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="write saliency maps for images",
        description="Write, for each image and method, OUT/<image stem>/<method>.png (overlay) and "
        ".npy (the map at the image's size), plus OUT/summary.png and OUT/results.json. "
        "The choices made for you (the layer of each layer method and how it is read, the output "
        "field) are printed on stderr first and kept in results.json; with --method all, a method "
        "that cannot explain the model is left out with its reason. "
        "Each image is recorded in OUT/records.jsonl as soon as its files are written, so a stopped "
        "run goes on with --resume. Under `torchrun --nproc-per-node N` each process explains a "
        "share of the images.",
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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the run in --out: keep the maps it recorded (same images, model and "
        "settings, files intact), compute the rest, write one results.json for all",
    )
    add_image_arguments(parser)
    add_explainer_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out)
    with distributed.session(check_device(args.device)) as device:
        loaded = load(args.model, arch=args.arch, device=str(device))
        methods = parse_methods(args.method)
        build = explainer_factory(args, loaded, methods)
        explainers, choices = prepare_explainers(
            {name: build(name, loaded.model) for name in methods},
            loaded,
            leave_out_refused=args.method.strip() == "all",
        )
        methods = list(explainers)
        check_cost(explainers, loaded, args.force)
        report = explain_files(
            args.inputs,
            loaded,
            explainers,
            args.out,
            target=args.target,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            on_start=lambda: show(choices),
            resume=args.resume,
            max_pixels=args.max_pixels,
        )
    if report.results is None:
        return 0
    for path, reason in report.skipped:
        print(f"salmap: skipped {path}: {reason}", file=sys.stderr)
    images = len({record.image for record in report.records})
    if args.resume:
        print(f"kept {report.kept} map(s) of the earlier run, computed {len(report.records) - report.kept}")
    print(f"explained {images} image(s) with {', '.join(methods)} using {loaded.name}")
    print(f"figure: {report.summary}\nresults: {report.results}")
    return 0
