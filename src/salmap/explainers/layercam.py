"""LayerCAM (Jiang, Zhang, Hou, Cheng and Wei 2021, "LayerCAM: Exploring hierarchical class
activation maps for localization")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from salmap.layers import LayerSpec, Reshape, layer_activations_and_gradients, resolve_layer
from salmap.registry import Option, register
from salmap.targets import Target

from .base import LayerExplainer
from .layer_maps import upsampled

# gamma of the paper's Eq. 9, which scales each layer's map before fusion
FUSION_GAMMA = 2.0


@register(
    "layercam",
    "cam",
    options=[
        Option(
            "fuse",
            str,
            None,
            "comma-separated further layers whose maps are fused with the target layer's",
        )
    ],
)
class LayerCAM(LayerExplainer):
    """LayerCAM: ReLU(sum_k ReLU(dS_c/dA_k) * A_k), element-wise (Jiang et al. 2021).

    Each position keeps its own positive gradient as the weight of its activation, which lets
    the method read any layer, shallow ones included. With `fuse` (layer names or modules), the
    map of every layer (the target layer and these) is upsampled to the input size, scaled by
    tanh(gamma M / max M) with gamma = 2 (the paper's Eq. 9) and fused by the element-wise
    maximum; one backward pass per layer, each stopped at its layer.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        fuse: str | Sequence[str | nn.Module] | None = None,
        output_key: str | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, output_key, reshape)
        layers = fuse.split(",") if isinstance(fuse, str) else list(fuse or [])
        self.fuse = [
            resolve_layer(self.model, item.strip() if isinstance(item, str) else item, None)[0]
            for item in layers
            if not isinstance(item, str) or item.strip()
        ]

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        return [(x.shape[-2], x.shape[-1])] * (1 + len(self.fuse))

    def map_of_layer(
        self, module: nn.Module, x: torch.Tensor, target: Target, reshape: Reshape | None = None
    ) -> torch.Tensor:
        """The map of one layer at the input size, its output read by `reshape` or automatically."""
        activations, gradients, _ = layer_activations_and_gradients(
            self.model, module, x, self.score(target), reshape
        )
        return upsampled(F.relu((F.relu(gradients) * activations).sum(dim=1)), x.shape[-2:])

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        cam = self.map_of_layer(self.layer(x), x, target, self.reshape)
        if not self.fuse:
            return cam
        maps = [cam] + [
            self.map_of_layer(resolve_layer(self.model, name, x)[1], x, target) for name in self.fuse
        ]
        scaled = []
        for layer_map in maps:
            peak = layer_map.flatten(1).amax(dim=1).clamp_min(torch.finfo(layer_map.dtype).tiny)
            scaled.append(torch.tanh(FUSION_GAMMA * layer_map / peak.view(-1, 1, 1)))
        return torch.stack(scaled).amax(dim=0)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "fuse": ",".join(self.fuse) or None}
