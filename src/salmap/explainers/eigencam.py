"""Eigen-CAM (Muhammad and Yeasin 2020, "Eigen-CAM: Class activation map using principal
components")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from salmap.layers import LayerSpec, Reshape
from salmap.registry import Option, register
from salmap.targets import Target

from .base import LayerExplainer
from .layer_maps import upsampled


def first_component(activations: torch.Tensor, center: bool = False) -> torch.Tensor:
    """O V_1: the activations `(B, K, h, w)` as an (hw x K) matrix O per image, projected on its
    first right singular vector V_1, `(B, h, w)`. V_1's sign is fixed so that sum_k V_1k >= 0:
    the map grows where the channels are more active (for non-negative activations, uncentred,
    V_1 is then non-negative). `center` subtracts each channel's mean over the positions first
    (a principal component analysis in the strict sense).

    Computed from the top eigenpair of the smaller Gram matrix: O^T O (K x K) gives V_1, or, when
    the layer has more channels than positions (1280 x 49 in EfficientNet-Lite0), O O^T (hw x hw)
    gives sigma_1 U_1 = O V_1, and sum_k V_1k has the sign of (O 1)^T U_1."""
    batch, channels, height, width = activations.shape
    matrix = activations.flatten(2).transpose(1, 2).double()
    if center:
        matrix = matrix - matrix.mean(dim=1, keepdim=True)
    if channels < height * width:
        first = torch.linalg.eigh(matrix.transpose(1, 2) @ matrix)[1][:, :, -1]
        first = first * torch.where(first.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
        return (matrix @ first.unsqueeze(2)).view(batch, height, width).to(activations.dtype)
    values, vectors = torch.linalg.eigh(matrix @ matrix.transpose(1, 2))
    projection = vectors[:, :, -1] * values[:, -1:].clamp_min(0).sqrt()
    sign = torch.where((matrix.sum(dim=2) * projection).sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    return (projection * sign).view(batch, height, width).to(activations.dtype)


@register(
    "eigencam",
    "cam",
    options=[Option("center", bool, False, "centre each channel before the decomposition")],
)
class EigenCAM(LayerExplainer):
    """Eigen-CAM: the layer's activations projected on their first principal component (Muhammad 2020).

    map = O V_1, O the (hw x K) matrix of the layer's activations and V_1 its first right
    singular vector (without centring, as in the paper; `center=True` centres each channel),
    the sign fixed so that the map grows with the channels' activity (`first_component`); no
    ReLU, as in the paper. Class-agnostic: the target is ignored. One forward pass in inference
    mode; upsampled bilinearly to the input size. pytorch-grad-cam always centres, keeps
    whichever sign the SVD returns and then takes the positive part, so about half of its maps
    show the negative of the component.
    """

    floor = "forward"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        center: bool = False,
        output_key: str | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, output_key, reshape)
        self.center = center

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        activations, output = self.activations(x)
        if target.kind != "score":
            target.resolve(self.read_logits(output))
        return upsampled(first_component(activations.float(), self.center), x.shape[-2:])

    def explain_signed(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The map itself: the projection on the component is not rectified."""
        return self.explain(x, target)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "center": self.center}
