"""HiResCAM (Draelos and Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations
of convolutional neural networks")."""

from __future__ import annotations

import torch

from salmap.registry import register
from salmap.targets import Target

from .layer_maps import RectifiedLayerMap


@register("hirescam", "cam")
class HiResCAM(RectifiedLayerMap):
    """HiResCAM: ReLU(sum_k dS_c/dA_k * A_k), element-wise (Draelos and Carin 2020).

    Grad-CAM averages each channel's gradient over the positions first; HiResCAM keeps the
    gradient at each position. When the score is linear in A (S = sum_kij W_kij A_kij + b, as
    for a flatten and a linear layer) the map is each position's exact contribution
    sum_k W_kij A_kij, which Grad-CAM's averaging blurs. The positive part is kept, as Grad-CAM
    does; upsampled bilinearly to the input size; the backward pass stops at the layer.
    """

    def layer_map(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        activations, gradients, _ = self.activations_and_gradients(x, self.score(target))
        return (gradients * activations).sum(dim=1)
