"""`salmap speed`: speed and memory of every method against its floor and the peer libraries."""

from __future__ import annotations

import argparse
from pathlib import Path

from salmap.errors import SalmapError
from salmap.io import check_output_folder
from salmap.registry import method_names, parse_methods

from .common import add_method_settings, check_device, method_settings

MODELS = ("resnet50", "efficientnet_lite0")


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SalmapError(f"unknown {what} {', '.join(unknown) or text!r}; choose from {', '.join(allowed)}")
    return names


def _integers(text: str, option: str) -> list[int]:
    try:
        return [int(value) for value in text.split(",")]
    except ValueError:
        raise SalmapError(f"{option} must be comma-separated integers, got {text!r}") from None


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODELS), help=f"default: {','.join(MODELS)}")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes (default: 1,8,32)")
    parser.add_argument(
        "--methods",
        default="all",
        help="methods, or all: every method of `salmap methods` (trained mappers with a fresh decoder)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument(
        "--memory-samples",
        default="10,50,200",
        help="SmoothGrad copies for the peak-memory table ('' to skip; default: 10,50,200)",
    )
    parser.add_argument("--out", default="benchmarks/results", help="output directory")
    add_method_settings(parser, speed=True)
    parser.set_defaults(run=run)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = (
        "Per model, batch size and method: time per image, peak memory, the ratio to the "
        "arithmetic floor (forward + backward to the input or the layer, or forward passes) and to "
        "the fastest peer (captum, pytorch-grad-cam, torchcam). Writes OUT/speed-<device>.json and .md."
    )
    _configure(
        subparsers.add_parser(
            "speed",
            help="time every method against its floor and the peer libraries",
            description=description,
        )
    )
    _configure(
        subparsers.add_parser("bench", description=f"The former name of `salmap speed`. {description}")
    )


def run(args: argparse.Namespace) -> int:
    from salmap.speed import markdown, memory_markdown, run_benchmark

    check_output_folder(args.out)
    batches = _integers(args.batches, "--batches")
    memory_samples = _integers(args.memory_samples, "--memory-samples") if args.memory_samples else []
    if not batches or min(batches + memory_samples) < 1 or args.repeats < 1:
        raise SalmapError("batch sizes, --memory-samples and --repeats must be >= 1")
    methods = method_names() if args.methods.strip() == "all" else parse_methods(args.methods, trained=True)
    rows, memory = run_benchmark(
        Path(args.out),
        _names(args.models, MODELS, "model"),
        batches,
        methods,
        check_device(args.device),
        args.repeats,
        method_settings(args),
        tuple(memory_samples),
    )
    print(markdown(rows))
    if memory:
        print(memory_markdown(memory))
    return 0
