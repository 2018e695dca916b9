"""Finding a target layer, and capturing its activations and the gradients of a score with
respect to them (the backward pass stops at the layer)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError

LayerSpec = str | nn.Module | None


def _spatial(output: object) -> bool:
    return isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1


def find_last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The dotted name of the last module, in order of completion, whose output is a 4-D
    feature map larger than 1x1 and that runs once per forward pass (one no-grad forward)."""
    finished: list[str] = []
    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def record(_module: nn.Module, _inputs: object, output: object, name: str = name) -> None:
            calls[name] = calls.get(name, 0) + 1
            if _spatial(output):
                finished.append(name)

        handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    candidates = [name for name in finished if calls[name] == 1]
    if not candidates:
        raise SalmapError("found no layer with a spatial output (B, C, h, w); name a target layer")
    return candidates[-1]


def resolve_layer(model: nn.Module, layer: LayerSpec, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The (name, module) for a dotted name, a module of `model`, or None (found automatically)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise SalmapError(
            "TorchScript models take no hooks, so layer methods cannot read them; "
            "load the model as an nn.Module (a state dict with --arch)"
        )
    modules = dict(model.named_modules())
    if layer is None:
        name = find_last_spatial_layer(model, x)
        return name, modules[name]
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise SalmapError("the target layer module is not part of the model")
    if layer not in modules:
        raise SalmapError(f"the model has no layer named {layer!r}")
    return layer, modules[layer]


@dataclass
class Capture:
    """The activations of a layer in the last forward pass, made a leaf that gradients reach."""

    activations: list[torch.Tensor] = field(default_factory=list)

    @property
    def value(self) -> torch.Tensor:
        if not self.activations:
            raise SalmapError("the target layer did not run in the forward pass")
        return self.activations[-1]


@contextlib.contextmanager
def capture_layer(module: nn.Module) -> Iterator[Capture]:
    """Record `module`'s output as a leaf tensor that requires grad, and stop autograd below it.

    The model goes on with a copy of the leaf, so in-place operations after the layer work.

    The forward pass runs without recording a graph up to the layer and with one after it, so a
    backward pass from the score ends at the layer: nothing below it is differentiated.
    """
    capture = Capture()

    def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise SalmapError(f"the target layer returns {type(output).__name__}, not a tensor")
        torch.set_grad_enabled(True)
        leaf = output.detach().requires_grad_(True)
        capture.activations.append(leaf)
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    previous = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    try:
        yield capture
    finally:
        torch.set_grad_enabled(previous)
        handle.remove()


def layer_activations(model: nn.Module, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """A = the layer's activations and the model's output for one forward pass of `x` in
    inference mode (no graph is recorded)."""
    kept: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if not isinstance(output, torch.Tensor):
            raise SalmapError(f"the target layer returns {type(output).__name__}, not a tensor")
        kept.append(output)

    handle = module.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            output = model(x)
    finally:
        handle.remove()
    if not kept:
        raise SalmapError("the target layer did not run in the forward pass")
    return kept[-1], output


def layer_activations_and_gradients(
    model: nn.Module, module: nn.Module, x: torch.Tensor, score: Callable[[Any], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """A = the layer's activations, G = d score / dA (backward stopped at the layer), and the
    model's output, for one forward pass of `x`; `score(output)` gives one score per image."""
    with capture_layer(module) as capture:
        output = model(x)
    scores = score(output)
    activations = capture.value
    (gradients,) = torch.autograd.grad(scores.sum(), activations)
    return activations.detach(), gradients, output
