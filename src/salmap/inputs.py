"""Checks on the images given to a model, and autograd for callers that turned it off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from salmap.errors import SalmapError


def check_batch(x: torch.Tensor) -> torch.Tensor:
    """Check that `x` is a tensor `(B, C, H, W)` of any type; return it."""
    if not isinstance(x, torch.Tensor):
        raise SalmapError(f"images must be a tensor (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise SalmapError(f"images must have shape (B, C, H, W), got {tuple(x.shape)}")
    return x


def check_images(x: torch.Tensor) -> torch.Tensor:
    """Check that `x` is a finite float batch `(B, C, H, W)` and return it detached from any
    graph (a copy outside inference mode when it was made inside it)."""
    check_batch(x)
    if not x.is_floating_point():
        raise SalmapError(f"images must be a float tensor normalised for the model, got {x.dtype}")
    if x.shape[0] == 0:
        raise SalmapError("images hold an empty batch")
    if not bool(torch.isfinite(x).all()):
        raise SalmapError("images hold NaN or infinite values")
    if x.is_inference():
        with torch.inference_mode(False):
            return x.clone()
    return x.detach()


@contextlib.contextmanager
def gradients_enabled() -> Iterator[None]:
    """Turn autograd on inside `torch.no_grad()` or `torch.inference_mode()` callers."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
