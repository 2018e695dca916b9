"""Grad-CAM++ (Chattopadhay, Sarkar, Howlader and Balasubramanian 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salmap.registry import register
from salmap.targets import Target

from .layer_maps import RectifiedLayerMap, channel_sum


@register("gradcam_plus_plus", "cam")
class GradCAMPlusPlus(RectifiedLayerMap):
    """Grad-CAM++: ReLU(sum_k w_k A_k), w_k = sum_ij alpha_ij^k ReLU(g_ij^k) (Chattopadhay et al. 2018).

    g = dS_c/dA and alpha_ij^k = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3), the closed form of the
    paper's Eq. 19 for the exponential of the score (alpha = 0 where the denominator is 0). The
    map is upsampled bilinearly to the input size; the backward pass stops at the layer.
    pytorch-grad-cam adds 1e-6 to the denominator, which changes alpha when the gradients are
    small (below about 1e-3); salmap follows the paper.
    """

    def layer_map(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        activations, gradients, _ = self.activations_and_gradients(x, self.score(target))
        squared = gradients.pow(2)
        denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * squared * gradients
        alpha = torch.where(denominator != 0, squared / denominator, 0.0)
        weights = (alpha * F.relu(gradients)).sum(dim=(2, 3))
        return channel_sum(weights, activations)
