"""Gradient saliency (Simonyan, Vedaldi and Zisserman 2013, "Deep inside convolutional networks")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from salmap.registry import register
from salmap.targets import Target

from .base import Explainer


def input_gradient(
    model: torch.nn.Module, x: torch.Tensor, score: Callable[[Any], torch.Tensor]
) -> torch.Tensor:
    """w = dS/dI: the gradient of each image's score (`score(output)`, `(B,)`) with respect to
    the input, `(B, C, H, W)`. Parameter gradients are never computed."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(model(x)).sum(), x)
    return grad


@register("gradient", "gradient")
class Gradient(Explainer):
    """Gradient saliency: max over colour channels of |dS_c/dI| (Simonyan et al. 2013)."""

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        return input_gradient(self.model, x, self.score(target)).abs().amax(dim=1)

    def explain_signed(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """dS_c/dI summed over colour channels."""
        return input_gradient(self.model, x, self.score(target)).sum(dim=1)
