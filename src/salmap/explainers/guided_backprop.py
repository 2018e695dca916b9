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


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward keeps only the positive part of the incoming gradient. Placed
    after a rectifier, whose own backward then zeroes it where the input was outside its range,
    it gives the guided rule with PyTorch's fused rectifier backward."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor) -> torch.Tensor:
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _relu(x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
    return _PositiveGradient.apply(F.relu(x))


def _relu6(x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
    return _PositiveGradient.apply(F.hardtanh(x, 0.0, 6.0))


def _hardtanh(
    x: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, *_: Any, **__: Any
) -> torch.Tensor:
    if min_val == 0.0:
        return _PositiveGradient.apply(F.hardtanh(x, 0.0, max_val))
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
