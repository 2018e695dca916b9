"""What the layer methods share: a weighted sum of a layer's channels, maps brought to the
input's size, and the rectified layer map with its signed form."""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F

from salmap.targets import Target

from .base import LayerExplainer


def channel_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A_k: `(B, h, w)` from channel weights `(B, K)` and activations `(B, K, h, w)`."""
    return torch.einsum("bk,bkhw->bhw", weights.to(activations.dtype), activations)


def upsampled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps `(B, h, w)` resized bilinearly to `size` (pixel centres aligned, as for Grad-CAM)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


class RectifiedLayerMap(LayerExplainer):
    """A CAM-style method whose map is ReLU(M) upsampled to the input size, M `(B, h, w)` a
    signed map at the layer's resolution (`layer_map`); the sanity check's signed attribution
    (`signed_maps`) is M upsampled the same way, before the ReLU."""

    @abstractmethod
    def layer_map(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """M, before the ReLU, at the layer's resolution."""

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        return upsampled(F.relu(self.layer_map(x, target)), x.shape[-2:])

    def explain_signed(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        return upsampled(self.layer_map(x, target), x.shape[-2:])
