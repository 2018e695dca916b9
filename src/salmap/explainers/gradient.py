"""Gradient saliency (Simonyan, Vedaldi and Zisserman 2013, "Deep inside convolutional networks")."""

from __future__ import annotations

import torch

from .base import Explainer, Target, class_scores, logits_of, target_indices


def input_gradient(model: torch.nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """w = dS_c/dI: the gradient of each image's pre-softmax class score with respect to the
    input, `(B, C, H, W)`. Parameter gradients are never computed."""
    x = x.detach().requires_grad_(True)
    logits = logits_of(model(x))
    scores = class_scores(logits, target_indices(target, logits))
    (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad


class Gradient(Explainer):
    """map = max over colour channels of |dS_c/dI| (Simonyan et al. 2013)."""

    name = "gradient"

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        return input_gradient(self.model, x, target).abs().amax(dim=1)
