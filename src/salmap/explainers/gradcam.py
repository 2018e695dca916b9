"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

import torch

from salmap.registry import register
from salmap.targets import Target

from .layer_maps import RectifiedLayerMap, channel_sum


@register("gradcam", "cam")
class GradCAM(RectifiedLayerMap):
    """Grad-CAM: ReLU(sum_k a_k A_k), a_k = spatial mean of dy_c/dA_k (Selvaraju et al. 2017).

    The map is upsampled bilinearly to the input size; the backward pass stops at the layer.
    Token and channels-last layers are read as feature maps (see `LayerExplainer`).
    """

    def layer_map(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """sum_k a_k A_k before the ReLU, `(B, h, w)` at the layer's resolution."""
        activations, gradients, _ = self.activations_and_gradients(x, self.score(target))
        return channel_sum(gradients.mean(dim=(2, 3)), activations)
