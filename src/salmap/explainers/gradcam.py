"""Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Explainer, Target, class_scores, logits_of, target_indices
from .layers import LayerSpec, capture_layer, resolve_layer


def layer_activations_and_gradients(
    model: nn.Module, module: nn.Module, x: torch.Tensor, target: Target
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A = the layer's activations, G = dy_c/dA (backward stopped at the layer), and the
    logits, for one forward pass of `x`."""
    with capture_layer(module) as capture:
        logits = logits_of(model(x))
    scores = class_scores(logits, target_indices(target, logits))
    activations = capture.value
    (gradients,) = torch.autograd.grad(scores.sum(), activations)
    return activations.detach(), gradients, logits.detach()


class LayerExplainer(Explainer):
    """An explainer that reads one layer: given by dotted name, module, or found automatically
    (the last module with a spatial output)."""

    def __init__(self, model: nn.Module, layer: LayerSpec = None) -> None:
        super().__init__(model)
        self._layer_spec = layer
        self.layer_name: str | None = None
        self._module: nn.Module | None = None

    def layer(self, x: torch.Tensor) -> nn.Module:
        """The target module, resolved on first use."""
        if self._module is None:
            self.layer_name, self._module = resolve_layer(self.model, self._layer_spec, x)
        return self._module

    def parameters(self) -> dict[str, Any]:
        return {"layer": self.layer_name or self._layer_spec}


class GradCAM(LayerExplainer):
    """a_k = mean over (i, j) of dy_c/dA_k(i, j); map = ReLU(sum_k a_k A_k), upsampled bilinearly
    to the input size (Selvaraju et al. 2017)."""

    name = "gradcam"

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        activations, gradients, _ = layer_activations_and_gradients(self.model, self.layer(x), x, target)
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
