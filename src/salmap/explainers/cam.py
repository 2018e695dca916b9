"""Class activation mapping (Zhou et al. 2016, "Learning deep features for discriminative
localization")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salmap.errors import SalmapError

from .base import Target, logits_of, target_indices
from .gradcam import LayerExplainer
from .layers import LayerSpec

NOT_GAP_LINEAR = (
    "CAM needs global average pooling of the target layer followed by one linear layer "
    "that gives the logits; use GradCAM for this model"
)


class CAM(LayerExplainer):
    """map = sum_k w_k^c A_k, with A the last convolutional features and w^c the row of the
    final linear layer for class c; the model must be GAP + linear (Zhou et al. 2016).

    Forward pass only. The first call checks that the linear layer's input is the spatial mean
    of A and that its output is the logits, and fails clearly otherwise.
    """

    name = "cam"

    def __init__(self, model: nn.Module, layer: LayerSpec = None) -> None:
        super().__init__(model, layer)
        self.checked = False

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        module = self.layer(x)
        features: list[torch.Tensor] = []
        linear_calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

        def keep_features(_m: nn.Module, _i: object, output: torch.Tensor) -> None:
            features.append(output)

        def keep_linear(linear: nn.Linear, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            linear_calls.append((linear, inputs[0], output))

        handles = [module.register_forward_hook(keep_features)]
        handles += [
            m.register_forward_hook(keep_linear) for m in self.model.modules() if isinstance(m, nn.Linear)
        ]
        try:
            with torch.inference_mode():
                logits = logits_of(self.model(x))
        finally:
            for handle in handles:
                handle.remove()
        if not features or not linear_calls:
            raise SalmapError(NOT_GAP_LINEAR)
        activations = features[-1]
        linear, pooled, output = linear_calls[-1]
        if not self.checked:
            if (
                activations.dim() != 4
                or output.shape != logits.shape
                or not torch.allclose(output, logits)
                or pooled.shape != activations.shape[:2]
                or not torch.allclose(pooled, activations.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
            ):
                raise SalmapError(NOT_GAP_LINEAR)
            self.checked = True
        with torch.no_grad():
            weights = linear.weight[target_indices(target, logits)]
            cam = torch.einsum("bk,bkhw->bhw", weights.to(activations.dtype), activations)
            return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
