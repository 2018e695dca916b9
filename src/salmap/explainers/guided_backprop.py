"""Guided backpropagation (Springenberg et al. 2014, "Striving for simplicity").

Rectifier modules (`nn.ReLU`, `nn.ReLU6`, `nn.Hardtanh(0, max)`) get a forward hook that makes
their backward guided. Models that also apply rectifiers as functions (`F.relu`, `x.relu()`)
run under `GuidedRectifiers`, a function mode that sees every call; one probe pass on the first
batch decides which of the two a model needs, since the mode costs a little on every operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from salmap.errors import SalmapError
from salmap.registry import register
from salmap.targets import Target

from .base import Explainer
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


def _rectifying_hardtanh(_x: torch.Tensor, min_val: float = -1.0, *_: Any, **__: Any) -> bool:
    return min_val == 0.0


def _is_rectifier(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU) or (isinstance(module, nn.Hardtanh) and module.min_val == 0.0)


class _FunctionalRectifierProbe(TorchFunctionMode):
    """Records whether a rectifier function runs while no rectifier module is running."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.found = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.depth == 0 and func in GuidedRectifiers.REPLACEMENTS:
            self.found |= func not in (F.hardtanh, F.hardtanh_) or _rectifying_hardtanh(
                *args, **(kwargs or {})
            )
        return func(*args, **(kwargs or {}))

    def enter_module(self, *_: Any) -> None:
        self.depth += 1

    def leave_module(self, *_: Any) -> None:
        self.depth -= 1


def has_functional_rectifiers(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether `model` applies ReLU or ReLU6 outside rectifier modules (one forward pass on `x`)."""
    probe = _FunctionalRectifierProbe()
    handles = []
    for module in model.modules():
        if _is_rectifier(module):
            handles.append(module.register_forward_pre_hook(probe.enter_module))
            handles.append(module.register_forward_hook(probe.leave_module))
    try:
        with torch.no_grad(), probe:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return probe.found


@contextmanager
def guided_rectifier_modules(model: nn.Module) -> Iterator[None]:
    """Inside this context every rectifier module of `model` backpropagates the guided way."""
    handles = [
        module.register_forward_hook(lambda _m, _i, output: _PositiveGradient.apply(output))
        for module in model.modules()
        if _is_rectifier(module)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@register("guided_backprop", "gradient")
class GuidedBackprop(Explainer):
    """Guided backpropagation: max over colour channels of |guided gradient| (Springenberg 2014).

    The gradient of the class score where every ReLU passes back only positive gradients at
    positive inputs. A model without any ReLU (GELU or SiLU networks: ViT, ConvNeXt,
    EfficientNet-B0) is refused: the guided rule is defined for rectifiers only, and there it would
    be the plain gradient under another name.
    """

    def __init__(self, model: nn.Module, output_key: str | None = None) -> None:
        super().__init__(model, output_key)
        self.functional_rectifiers: bool | None = None

    def check(self, x: torch.Tensor) -> None:
        if isinstance(self.model, torch.jit.ScriptModule):
            raise SalmapError("guided backprop cannot reach the ReLUs inside a TorchScript model")
        if self.functional_rectifiers is None:
            functional = has_functional_rectifiers(self.model, x[:1])
            if not functional and not any(_is_rectifier(module) for module in self.model.modules()):
                raise SalmapError(
                    f"guided backprop changes the backward pass of ReLUs, and {type(self.model).__name__} "
                    "has none (no nn.ReLU, ReLU6 or F.relu: its activations are GELU, SiLU or the like), "
                    "so it would be the plain gradient: use gradient"
                )
            self.functional_rectifiers = functional

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        self.check(x)
        with GuidedRectifiers() if self.functional_rectifiers else guided_rectifier_modules(self.model):
            grad = input_gradient(self.model, x, self.score(target))
        return grad.abs().amax(dim=1)
