"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salmap.registry import register
from salmap.targets import Target

from .base import LayerExplainer


@register("gradcam", "cam")
class GradCAM(LayerExplainer):
    """Grad-CAM: ReLU(sum_k a_k A_k), a_k = spatial mean of dy_c/dA_k (Selvaraju et al. 2017).

    The map is upsampled bilinearly to the input size; the backward pass stops at the layer.
    Token and channels-last layers are read as feature maps (see `LayerExplainer`).
    """

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        activations, gradients, _ = self.activations_and_gradients(x, self.score(target))
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
