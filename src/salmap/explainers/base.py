"""The shared base of every explainer: input checks, targets, normalisation, and the layer
methods' layer lookup."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.inputs import check_images, gradients_enabled
from salmap.layers import LayerSpec, resolve_layer
from salmap.maps import normalize_maps
from salmap.targets import OutputReader, Target, TargetSpec, as_target


def uncompiled(model: nn.Module) -> nn.Module:
    """The module behind a `torch.compile` result (hooks and layer names live there)."""
    return getattr(model, "_orig_mod", model) if type(model).__name__ == "OptimizedModule" else model


class Explanation(NamedTuple):
    """Maps `(B, H, W)`, the model's logits `(B, classes)` for the same images (None when the
    output holds none) and the target each map explains, resolved (`target.describe(i)`)."""

    maps: torch.Tensor
    logits: torch.Tensor | None
    target: Target


class Explainer(ABC):
    """A saliency method: `explainer(x, target=None) -> (B, H, W)` maps in [0, 1].

    `x` is a batch `(B, C, H, W)` normalised for the model; `target` is None (each image's
    top-1 class), an int, one class per image, a set of classes per image or a function of the
    model's output (see `salmap.targets`). `normalize=False` returns the raw map. `output_key`
    names the field of a dict or object output that holds the logits.
    """

    name: str = "explainer"
    # the arithmetic floor of one pass, for the speed benchmark: "input_gradient" (a forward and a
    # backward to the input), "layer_gradient" (a backward that stops at a layer) or "forward"
    floor: str = "input_gradient"

    def __init__(self, model: nn.Module, output_key: str | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise SalmapError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = uncompiled(model)
        self.read_logits = OutputReader(output_key)

    @classmethod
    def build(
        cls,
        model: nn.Module,
        *,
        layer: LayerSpec = None,
        output_key: str | None = None,
        checkpoint: str | Path | None = None,
        **settings: Any,
    ) -> Explainer:
        """The explainer for `model` from the registry's arguments; `layer` and `checkpoint` are
        read by the methods that use them."""
        return cls(model, output_key=output_key, **settings)

    def __call__(self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True) -> torch.Tensor:
        return self.explanation(x, target, normalize=normalize).maps

    def explanation(
        self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True
    ) -> Explanation:
        """The maps and the target they explain, resolved; `logits` is None here (see
        `with_prediction`)."""
        x = check_images(x)
        if self.model.training:
            raise SalmapError("put the model in eval mode (model.eval()) before explaining it")
        goal = as_target(target, x.shape[0])
        with gradients_enabled():
            maps = self.explain(x, goal)
        maps = maps.detach().float()
        return Explanation(normalize_maps(maps) if normalize else maps, None, goal)

    def with_prediction(
        self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True
    ) -> Explanation:
        """The maps, the model's logits for `x` and the resolved target. The logits come from the
        method's own forward pass on `x` where it makes one (every method but SmoothGrad with a
        given target and mappers that bypass `model.forward`), so knowing the class and its score
        costs nothing more; otherwise from one extra forward pass."""
        x = check_images(x)
        captured: list[torch.Tensor] = []

        def keep(_module: nn.Module, args: tuple, output: Any) -> None:
            first = args[0] if args else None
            if (
                not captured
                and isinstance(first, torch.Tensor)
                and first.shape == x.shape
                and first.data_ptr() == x.data_ptr()
            ):
                captured.append(self.read_logits(output).detach())

        scripted = isinstance(self.model, torch.jit.ScriptModule)
        handle = None if scripted else self.model.register_forward_hook(keep)
        try:
            explanation = self.explanation(x, target, normalize=normalize)
        finally:
            if handle is not None:
                handle.remove()
        if not captured:
            with torch.no_grad():
                captured.append(self.read_logits(self.model(x)))
        return explanation._replace(logits=captured[0].float())

    def score(self, target: Target) -> Any:
        """`output -> (B,)` scores of `target`, reading logits the way this explainer does."""
        return lambda output: target.scores(output, self.read_logits)

    def __enter__(self) -> Explainer:
        """Explainers hold no hooks between calls; `with` is accepted for peers' habits."""
        return self

    def __exit__(self, *_: object) -> None:
        return None

    @abstractmethod
    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The raw maps `(B, H, W)` for checked images `x`, autograd enabled."""

    def signed_maps(self, x: torch.Tensor, target: TargetSpec = None) -> torch.Tensor | None:
        """The signed attribution the map is made from, summed over colour channels, `(B, H, W)`
        (what Adebayo et al. 2018 compare besides absolute maps); None for a method without one."""
        x = check_images(x)
        if self.model.training:
            raise SalmapError("put the model in eval mode (model.eval()) before explaining it")
        with gradients_enabled():
            signed = self.explain_signed(x, as_target(target, x.shape[0]))
        return None if signed is None else signed.detach().float()

    def explain_signed(self, x: torch.Tensor, target: Target) -> torch.Tensor | None:
        """`signed_maps` for checked images, autograd enabled; None unless a method has a sign."""
        return None

    def settings(self) -> dict[str, Any]:
        """The method's settings, as written next to each map."""
        return {}

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """The input size of each pass of the `floor` kind that explaining `x` takes at least."""
        return [(x.shape[-2], x.shape[-1])]

    def choices(self) -> dict[str, str]:
        """The choices made for the user (output field, layer), to be shown."""
        return {"output": self.read_logits.choice} if self.read_logits.choice else {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({settings})"


class LayerExplainer(Explainer):
    """An explainer that reads one layer: given by dotted name, module, or found automatically
    (the last module with a spatial output)."""

    floor = "layer_gradient"

    def __init__(self, model: nn.Module, layer: LayerSpec = None, output_key: str | None = None) -> None:
        super().__init__(model, output_key)
        self._layer_spec = layer
        self.layer_name: str | None = None
        self._module: nn.Module | None = None

    @classmethod
    def build(
        cls,
        model: nn.Module,
        *,
        layer: LayerSpec = None,
        output_key: str | None = None,
        checkpoint: str | Path | None = None,
        **settings: Any,
    ) -> Explainer:
        return cls(model, layer, output_key=output_key, **settings)

    def layer(self, x: torch.Tensor) -> nn.Module:
        """The target module, resolved on first use."""
        if self._module is None:
            self.layer_name, self._module = resolve_layer(self.model, self._layer_spec, x)
        return self._module

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer_name or self._layer_spec}

    def choices(self) -> dict[str, str]:
        chosen = super().choices()
        if self.layer_name is not None:
            chosen["layer"] = self.layer_name + (" (auto)" if self._layer_spec is None else "")
        return chosen


def resolve_top1(explainer: Explainer, x: torch.Tensor, target: Target) -> Target:
    """`target` with its top-1 classes fixed by a forward pass without gradient on `x` when none
    were given (a score function or given classes need no pass)."""
    if target.kind == "top1":
        with torch.no_grad():
            target.resolve(explainer.read_logits(explainer.model(x)))
    return target
