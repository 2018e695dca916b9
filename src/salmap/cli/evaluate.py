"""`salmap evaluate` and `salmap benchmark`: every metric for every method on the same data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from salmap import distributed
from salmap.errors import SalmapError
from salmap.evaluation import evaluate, parse_source, protocol, write_outputs
from salmap.evaluation.protocols import CAUSAL_TARGETS, PROTOCOLS
from salmap.evaluation.store import BatchStore
from salmap.io import check_output_folder, refuse_existing, write_text
from salmap.models import load
from salmap.registry import method, parse_methods

from .common import (
    add_explainer_arguments,
    add_model_arguments,
    check_cost,
    check_device,
    explainer_factory,
    prepare_explainers,
    show,
)

OUTPUTS = ("report.md", "metrics.json", "metrics.csv", "gallery.png", "curves.png", "sanity.png")
BENCHMARK_VARIANTS = ("single", "twin")


def _add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--method", default="all", help="comma-separated methods, or all")
    parser.add_argument("--out", default=default_out, help=f"output directory (default: {default_out})")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    parser.add_argument("--sanity-images", type=int, default=4, help="images for the sanity check (0: skip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated digits (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        default="salmap",
        help="casm: the CASM paper's Table 1 and masked-image classification as the authors' code "
        "computes them; salmap: every metric (default: salmap)",
    )
    parser.add_argument(
        "--causal-target",
        choices=list(CAUSAL_TARGETS),
        default="label",
        help="class that deletion / insertion score: label (the class the maps explain) or prediction "
        "(the model's top-1, as RISE) (default: label)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the stopped evaluation in --out: its finished batches (OUT/batches/) are "
        "read back, the rest computed",
    )
    add_explainer_arguments(parser)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="every metric for every method on a data set",
        description="Compute LE/OM/F1, BoxAcc, pointing game, deletion/insertion, mask statistics, "
        "masked-image classification, AUROC/coverage (when pixel masks are known) and the sanity "
        "check; write report.md, metrics.json, metrics.csv and figures.",
    )
    parser.add_argument("--data", required=True, help="digits, digits:single, digits:twin or imagenet:PATH")
    add_model_arguments(parser)
    parser.set_defaults(model=None)
    _add_common(parser, "salmap-evaluation")
    parser.set_defaults(run=run_evaluate)
    bench = subparsers.add_parser(
        "benchmark",
        help="evaluate every method on the cluttered digits (single and twin)",
        description="`evaluate` on the cluttered digits benchmark with the shipped classifier, "
        "for the single and twin variants; prints the main table.",
    )
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    _add_common(bench, "salmap-benchmark")
    bench.set_defaults(run=run_benchmark, limit=200)


def _check_outputs(folders: list[Path], overwrite: bool, resume: bool) -> None:
    if overwrite and resume:
        raise SalmapError("--resume keeps the finished batches and --overwrite replaces them: choose one")
    for folder in folders:
        check_output_folder(folder)
        if BatchStore(folder).exists() and not (overwrite or resume):
            raise SalmapError(
                f"{folder} holds a stopped or finished evaluation: pass --resume to go on with it "
                "or --overwrite to start again"
            )
    if not resume:
        refuse_existing([folder / name for folder in folders for name in OUTPUTS], overwrite)


def _evaluate_one(
    args: argparse.Namespace, data: str, model_name: str, out: Path, device: torch.device
) -> tuple[dict, str] | None:
    """Evaluate and write the outputs; None on the ranks other than 0 under `torchrun`."""
    if args.limit is not None and args.limit < 1:
        raise SalmapError(f"--limit must be >= 1, got {args.limit}")
    loaded = load(model_name, arch=getattr(args, "arch", None), device=str(device))
    methods = parse_methods(args.method, trained=args.checkpoint is not None or loaded.name == "digits_cnn")
    build = explainer_factory(args, loaded, methods)
    check_cost(
        {name: build(name, loaded.model) for name in methods if not method(name).trained}, loaded, args.force
    )
    chosen = protocol(args.protocol).with_causal_target(args.causal_target)
    source = parse_source(data, loaded, args.limit, seed=args.seed, box_geometry=chosen.box_geometry)
    if distributed.rank() == 0:
        for path, reason in source.skipped:
            print(f"salmap: skipped {path}: {reason}", file=sys.stderr)
    explainers = {name: build(name, loaded.model) for name in methods}
    prepared, choices = prepare_explainers(explainers, loaded, leave_out_refused=args.method.strip() == "all")
    show(choices)
    methods = list(prepared)
    started = time.perf_counter()
    evaluation = evaluate(
        loaded,
        methods,
        build,
        source,
        batch_size=args.batch_size,
        sanity_images=args.sanity_images,
        protocol=chosen,
        store=BatchStore(out),
        resume=args.resume,
    )
    if evaluation is None:
        return None
    return write_outputs(evaluation, out, f"salmap evaluation: {data}", time.perf_counter() - started)


def run_evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    model = args.model or ("digits_cnn" if args.data.startswith("digits") else "efficientnet_lite0")
    with distributed.session(check_device(args.device)) as device:
        distributed.checked(lambda: _check_outputs([out], args.overwrite, args.resume))
        written = _evaluate_one(args, args.data, model, out, device)
    if written is None:
        return 0
    print(written[1])
    print(f"report: {out / 'report.md'}")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    out = Path(args.out)
    folders = [out / variant for variant in BENCHMARK_VARIANTS]
    with distributed.session(check_device(args.device)) as device:
        distributed.checked(lambda: _check_outputs(folders, args.overwrite, args.resume))
        written = [
            _evaluate_one(args, f"digits:{variant}", "digits_cnn", folder, device)
            for variant, folder in zip(BENCHMARK_VARIANTS, folders, strict=True)
        ]
    if written[0] is None:
        return 0
    reports = [
        text.replace("\n# ", "\n## ").replace("## ", "### ").replace("# ", "## ", 1) for _, text in written
    ]
    combined = "# salmap benchmark: cluttered digits\n\n" + "\n".join(reports)
    write_text(out / "report.md", combined)
    print(combined)
    print(f"report: {out / 'report.md'}")
    return 0
