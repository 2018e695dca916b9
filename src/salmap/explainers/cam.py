"""Class activation mapping (Zhou et al. 2016, "Learning deep features for discriminative
localization")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salmap.errors import SalmapError
from salmap.layers import LayerSpec, Reshape, find_last_spatial_layer
from salmap.registry import register
from salmap.targets import Target

from .base import LayerExplainer

NOT_GAP_LINEAR = (
    "CAM needs global average pooling of the target layer followed by one linear layer "
    "that gives the logits; use GradCAM for this model"
)


@register("cam", "cam")
class CAM(LayerExplainer):
    """Class activation mapping: sum_k w_k^c A_k for GAP + linear models (Zhou et al. 2016).

    A are the last spatial features (the layer found automatically is the last module with a
    spatial output: the input of the global pooling; token and channels-last layers are read as
    feature maps) and w^c the row of the final linear layer for class c (the sum of the rows of a
    class set). Forward pass only. The first call checks that the linear layer's input is the
    spatial mean of A and that its output is the logits, and fails clearly otherwise.
    """

    floor = "forward"
    find_layer = staticmethod(find_last_spatial_layer)

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        output_key: str | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, output_key, reshape)
        self.checked = False

    def check(self, x: torch.Tensor) -> None:
        super().check(x)
        if not self.checked:
            self.explain(x, Target(None, x.shape[0]))

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        if target.kind == "score":
            raise SalmapError("CAM explains class scores; use a gradient method for a score function")
        self.layer(x)
        linear_calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

        def keep_linear(linear: nn.Linear, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            linear_calls.append((linear, inputs[0], output))

        handles = [
            m.register_forward_hook(keep_linear) for m in self.model.modules() if isinstance(m, nn.Linear)
        ]
        try:
            activations, output = self.activations(x)
        finally:
            for handle in handles:
                handle.remove()
        logits = self.read_logits(output)
        if not linear_calls:
            raise SalmapError(NOT_GAP_LINEAR)
        linear, pooled, last = linear_calls[-1]
        if not self.checked:
            if (
                last.shape != logits.shape
                or not torch.allclose(last, logits)
                or pooled.shape != activations.shape[:2]
                or not torch.allclose(pooled, activations.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
            ):
                raise SalmapError(NOT_GAP_LINEAR)
            self.checked = True
        target.resolve(logits)
        with torch.no_grad():
            weights = target.weights(logits.shape[-1], logits.device, linear.weight.dtype) @ linear.weight
            cam = torch.einsum("bk,bkhw->bhw", weights.to(activations.dtype), activations)
            return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
