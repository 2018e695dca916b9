"""Saliency maps as tensors: the checks every consumer applies, and per-image scaling."""

from __future__ import annotations

import torch

from salmap.errors import SalmapError


def check_maps(maps: torch.Tensor, name: str = "maps") -> torch.Tensor:
    """Check that `maps` is a float batch `(B, H, W)` with values in [0, 1]; return it detached."""
    if not isinstance(maps, torch.Tensor):
        raise SalmapError(f"{name} must be a tensor (B, H, W), got {type(maps).__name__}")
    if maps.dim() != 3 or maps.shape[0] == 0:
        raise SalmapError(f"{name} must have shape (B, H, W) with B >= 1, got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise SalmapError(f"{name} must be a float tensor in [0, 1], got {maps.dtype}")
    if not bool(torch.isfinite(maps).all()):
        raise SalmapError(f"{name} hold NaN or infinite values")
    if bool((maps < 0).any()) or bool((maps > 1).any()):
        raise SalmapError(f"{name} must lie in [0, 1]: normalise them first (explainer default)")
    return maps.detach()


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a `(B, H, W)` batch to [0, 1]: (m - min) / (max - min), zero when flat."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)
