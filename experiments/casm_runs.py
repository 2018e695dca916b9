"""Train (or resume) one CASM / Baseline run of the digits preset and keep snapshots on the way.

Usage:
    python experiments/casm_runs.py OUT [--thinning L100] [--score E] [--classifier-update mean]
        [--separate-encoder] [--steps 200] [--classes 0,1,2,3,4] [--seed 0] [--checkpoint-every 100]
        [--snapshot 200 400]

A run folder that holds `config.json` and `checkpoint.pt` is resumed with its own settings (the
options above are then ignored, except `--steps`, which may extend the run, and `--snapshot`).
After the checkpoint of every step listed in `--snapshot`, `checkpoint.pt` is copied to
`OUT/step<N>.pt` (a training checkpoint; `CASM.from_checkpoint` reads it, `export` below turns
it into the smaller inference format that ships with the package). Run with one torch thread
(`OMP_NUM_THREADS=1`) on a shared CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from salmap.casm import checkpoint
from salmap.casm.train import CASMConfig, preset, train_casm


def export(training_checkpoint: str | Path, target: str | Path) -> Path:
    """The inference checkpoint (format `salmap-casm-v1`, no optimiser or pool) of a training one."""
    from salmap.data.digits import DIGITS_MEAN, DIGITS_STD

    state = checkpoint.load(training_checkpoint, (checkpoint.TRAINING_FORMAT,))
    if state["config"].get("model") != "digits_cnn":
        raise SystemExit("export knows the input statistics of the digits CNN only")
    mapper = {
        "format": checkpoint.MAPPER_FORMAT,
        "backbone": state["backbone"],
        "classifier": state["classifier"],
        "mapper": state["mapper"],
        "config": state["config"],
        "step": state["step"],
        "mean": list(DIGITS_MEAN),
        "std": list(DIGITS_STD),
    }
    return checkpoint.save(mapper, target)


def run(
    out: Path,
    overrides: dict,
    steps: int,
    snapshots: list[int],
    progress: bool = True,
) -> dict:
    """Train or resume the run in `out` to `steps` steps; returns a summary (wall time, step)."""
    torch.set_num_threads(1)
    saved, ckpt = out / "config.json", out / "checkpoint.pt"
    resume = saved.is_file() and ckpt.is_file()
    if resume:
        config = CASMConfig(**json.loads(saved.read_text()))
        config = replace(config, steps=max(steps, config.steps or 0))
    else:
        config = preset("digits", steps=steps, **overrides)
    wanted = set(snapshots)

    def keep(step: int) -> None:
        if step in wanted and ckpt.is_file():
            shutil.copyfile(ckpt, out / f"step{step}.pt")

    started = time.perf_counter()
    result = train_casm(config, out, resume=resume, progress=progress, on_step=keep)
    seconds = time.perf_counter() - started
    summary = {"out": str(out), "steps": result.steps, "seconds_this_call": round(seconds, 1)}
    with (out / "wall_times.jsonl").open("a") as handle:
        handle.write(json.dumps(summary) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--thinning", default="L100")
    parser.add_argument("--score", default="E")
    parser.add_argument("--classifier-update", default="mean", choices=("mean", "two_steps"))
    parser.add_argument("--separate-encoder", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--classes", default=None, help="comma-separated digits, e.g. 0,1,2,3,4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--snapshot", type=int, nargs="*", default=[])
    parser.add_argument("--export", nargs=2, metavar=("TRAINING_CKPT", "TARGET"), default=None)
    args = parser.parse_args()
    if args.export:
        print(export(*args.export))
        return
    overrides = {
        "thinning": args.thinning,
        "score": args.score,
        "classifier_update": args.classifier_update,
        "share_encoder": not args.separate_encoder,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "digits_classes": None if args.classes is None else [int(c) for c in args.classes.split(",")],
    }
    print(json.dumps(run(args.out, overrides, args.steps, args.snapshot)))


if __name__ == "__main__":
    main()
