"""Arguments and checks shared by several subcommands."""

from __future__ import annotations

import argparse

import torch

from salmap.errors import SalmapError
from salmap.models import DEFAULT_MODEL


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model name or checkpoint file (default: {DEFAULT_MODEL}; see `salmap models`)",
    )
    parser.add_argument(
        "--arch", default=None, help="architecture of a state-dict checkpoint given as --model"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def check_device(name: str) -> str:
    """The device name, checked: CUDA only when it is available."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SalmapError(f"unknown device {name!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SalmapError("CUDA is not available on this machine; use --device cpu")
    return name
