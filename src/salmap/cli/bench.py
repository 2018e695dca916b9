"""`salmap bench`: speed and memory of every method against its floor and the peer libraries."""

from __future__ import annotations

import argparse
from pathlib import Path

from salmap.errors import SalmapError

from .common import check_device

MODELS = ("resnet50", "efficientnet_lite0")
METHODS = ("gradient", "guided_backprop", "smoothgrad", "cam", "gradcam", "cameras")


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SalmapError(f"unknown {what} {', '.join(unknown) or text!r}; choose from {', '.join(allowed)}")
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time every method against its floor and the peer libraries",
        description="Per model, batch size and method: time per image, peak memory, the ratio to the "
        "arithmetic floor (forward + backward to the input or the layer) and to the fastest peer "
        "(captum, pytorch-grad-cam, torchcam). Writes OUT/speed-<device>.json and .md.",
    )
    parser.add_argument("--models", default=",".join(MODELS), help=f"default: {','.join(MODELS)}")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes (default: 1,8,32)")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods (default: all post-hoc)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--samples", type=int, default=10, help="SmoothGrad's noisy copies (default: 10)")
    parser.add_argument("--out", default="benchmarks/results", help="output directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from salmap.bench import markdown, run_benchmark

    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        raise SalmapError(f"--batches must be integers, got {args.batches!r}") from None
    if min(batches) < 1 or args.repeats < 1 or args.samples < 1:
        raise SalmapError("batch sizes, --repeats and --samples must be >= 1")
    rows = run_benchmark(
        Path(args.out),
        _names(args.models, MODELS, "model"),
        batches,
        _names(args.methods, METHODS, "method"),
        check_device(args.device),
        args.repeats,
        args.samples,
    )
    print(markdown(rows))
    return 0
