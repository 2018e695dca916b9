"""XGrad-CAM (Fu, Hu, Dong, Guo, Gao and Li 2020, "Axiom-based Grad-CAM")."""

from __future__ import annotations

import torch

from salmap.registry import register
from salmap.targets import Target

from .layer_maps import RectifiedLayerMap, channel_sum


@register("xgradcam", "cam")
class XGradCAM(RectifiedLayerMap):
    """XGrad-CAM: ReLU(sum_k w_k A_k), w_k = sum_ij (A_ij^k / sum_ab A_ab^k) dS_c/dA_ij^k (Fu et al. 2020).

    The gradient averaged with the activations as weights, which makes the map satisfy the
    paper's sensitivity and conservation axioms; a channel whose activations sum to 0 gets
    weight 0 (pytorch-grad-cam adds 1e-7 to the sum instead). Upsampled bilinearly to the input
    size; the backward pass stops at the layer.
    """

    def layer_map(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        activations, gradients, _ = self.activations_and_gradients(x, self.score(target))
        totals = activations.sum(dim=(2, 3))
        weighted = (activations * gradients).sum(dim=(2, 3))
        weights = torch.where(totals != 0, weighted / totals, 0.0)
        return channel_sum(weights, activations)
