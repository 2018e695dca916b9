"""What the layer methods share: a weighted sum of a layer's channels, and maps brought to the
input's size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def channel_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A_k: `(B, h, w)` from channel weights `(B, K)` and activations `(B, K, h, w)`."""
    return torch.einsum("bk,bkhw->bhw", weights.to(activations.dtype), activations)


def upsampled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps `(B, h, w)` resized bilinearly to `size` (pixel centres aligned, as for Grad-CAM)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
