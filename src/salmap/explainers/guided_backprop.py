"""Guided backpropagation (Springenberg et al. 2014, "Striving for simplicity")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from salmap.errors import SalmapError

from .base import Explainer, Target
from .gradient import input_gradient


class _GuidedRectifier(torch.autograd.Function):
    """y = clamp(x, low, high); backward passes a gradient only where it is positive and the
    forward input was inside the rectifier's open range."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.high = high
        ctx.low = low
        return x.clamp(min=low, max=high)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        passing = (x > ctx.low) & (grad > 0)
        if ctx.high is not None:
            passing &= x < ctx.high
        return grad * passing, None, None


def _relu(x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
    return _GuidedRectifier.apply(x, 0.0, None)


def _relu6(x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
    return _GuidedRectifier.apply(x, 0.0, 6.0)


def _hardtanh(x: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, *_: Any, **__: Any):
    if min_val == 0.0:
        return _GuidedRectifier.apply(x, 0.0, max_val)
    return F.hardtanh(x, min_val, max_val)


class GuidedRectifiers(TorchFunctionMode):
    """Inside this mode every ReLU (`nn.ReLU`, in-place or not, `F.relu`, `torch.relu`,
    `Tensor.relu`) and ReLU6 backpropagates the guided way. In-place calls return a new tensor."""

    REPLACEMENTS: ClassVar[dict[Callable, Callable]] = {
        F.relu: _relu,
        F.relu_: _relu,
        torch.relu: _relu,
        torch.relu_: _relu,
        torch.Tensor.relu: _relu,
        torch.Tensor.relu_: _relu,
        F.relu6: _relu6,
        F.hardtanh: _hardtanh,
        F.hardtanh_: _hardtanh,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        replacement = self.REPLACEMENTS.get(func)
        if replacement is not None:
            return replacement(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


class GuidedBackprop(Explainer):
    """map = max over colour channels of |guided gradient|: the gradient of the class score
    where every ReLU passes back only positive gradients at positive inputs (Springenberg 2014)."""

    name = "guided_backprop"

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        if isinstance(self.model, torch.jit.ScriptModule):
            raise SalmapError("guided backprop cannot reach the ReLUs inside a TorchScript model")
        with GuidedRectifiers():
            grad = input_gradient(self.model, x, target)
        return grad.abs().amax(dim=1)
