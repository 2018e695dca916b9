"""`salmap train-casm`: train CASM (or the Baseline with --thinning F) and write a run folder."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from salmap.errors import SalmapError
from salmap.io import check_output_folder

SETTINGS = {
    "data": str,
    "model": str,
    "thinning": str,
    "score": str,
    "area_weight": float,
    "batch_size": int,
    "epochs": int,
    "steps": int,
    "seed": int,
    "checkpoint_every": int,
    "num_workers": int,
    "decoder_width": int,
    "classifier_update": str,
    "decoder_stem": str,
    "mask_upsample": str,
    "train_crop": str,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `train-casm` subcommand."""
    parser = subparsers.add_parser(
        "train-casm",
        help="train the classifier-agnostic saliency mapper (Zolna et al. 2019)",
        description="Train CASM with Algorithm 1 of Zolna et al. 2019. The run folder gets "
        "config.json, metrics.jsonl, checkpoint.pt (resumable) and casm.pt (for explaining). "
        "Runs on one CPU or GPU, or under `torchrun --nproc-per-node N`.",
    )
    parser.add_argument(
        "--preset", choices=("digits", "paper"), default="digits", help="default: %(default)s"
    )
    parser.add_argument("--out", default="runs/casm", help="run folder (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--data", help="'digits' or an ImageNet-layout root (train/<wnid>/*.JPEG)")
    parser.add_argument("--model", help="initial classifier f(0) (digits_cnn, resnet50, ...)")
    parser.add_argument("--thinning", help="F (Baseline), L, FL, L100, L1000 or L<k>/<pool size>")
    parser.add_argument("--score", choices=("E", "C"), help="E: entropy (default), C: classification loss")
    parser.add_argument("--area-weight", type=float, help="lambda (default: the authors' per thinning)")
    parser.add_argument("--separate-encoder", action="store_true", help="do not share f's encoder")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps", type=int, help="number of iterations (overrides --epochs)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--num-workers", type=int, help="data loader processes")
    parser.add_argument("--decoder-width", type=int, help="decoder channels per stage")
    parser.add_argument(
        "--classifier-update",
        choices=("two_steps", "mean"),
        help="two_steps: SGD steps on the clean, then the masked batch (the authors'; paper preset); "
        "mean: one step on the mean of both losses (digits preset)",
    )
    parser.add_argument(
        "--decoder-stem",
        choices=("pooled", "conv"),
        help="ResNet decoder stem: after the max-pool (the authors') or the convolution before it",
    )
    parser.add_argument(
        "--mask-upsample", choices=("nearest", "bilinear"), help="mask enlargement to the input size"
    )
    parser.add_argument(
        "--train-crop",
        choices=("random", "center"),
        help="ImageNet training images: random resized crop + flip (the authors') or centre crop",
    )
    parser.add_argument(
        "--random-init", action="store_true", help="start f(0) from random weights, not pretrained ones"
    )
    parser.add_argument("--classes", help="train on these digits only, e.g. 0,1,2,3,4")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> dict:
    chosen = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    if args.separate_encoder:
        chosen["share_encoder"] = False
    if args.deterministic:
        chosen["deterministic"] = True
    if args.random_init:
        chosen["pretrained"] = False
    if args.classes:
        try:
            chosen["digits_classes"] = sorted({int(c) for c in args.classes.split(",")})
        except ValueError:
            raise SalmapError(f"--classes takes digits separated by commas, got {args.classes!r}") from None
    return chosen


def saved_config(path: Path, kind: type, overrides: dict) -> Any:
    """The run's configuration read back from `config.json`, with `overrides`; one clear error
    when the file is not one."""
    known = {f.name for f in fields(kind)}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        return kind(**{**{k: v for k, v in stored.items() if k in known}, **overrides})
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error).splitlines()[0]
        raise SalmapError(f"cannot resume from {path}: it is not a run's configuration ({reason})") from None


def run(args: argparse.Namespace) -> int:
    """Build the configuration (the saved one when resuming), train, print where it went."""
    from salmap.casm.train import CASMConfig, preset, train_casm

    out = check_output_folder(args.out)
    overrides = _overrides(args)
    saved = out / "config.json"
    if args.resume and saved.is_file():
        changed = sorted(set(overrides) - {"steps", "epochs", "checkpoint_every", "num_workers"})
        if changed:
            raise SalmapError(f"--resume keeps the run's settings; drop {', '.join(changed)}")
        config = saved_config(saved, CASMConfig, overrides)
    else:
        config = preset(args.preset, **overrides)
    result = train_casm(config, out, resume=args.resume, progress=not args.no_progress)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s; mapper: {result.mapper}")
    return 0
