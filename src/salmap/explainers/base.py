"""The shared base of every explainer: input checks, targets, normalisation, the choices made
for the user, and the layer methods' layer lookup and capture."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.inputs import check_images, gradients_enabled
from salmap.layers import (
    LayerSpec,
    Reshape,
    find_target_layer,
    layer_activations,
    layer_activations_and_gradients,
    reading_for,
    resolve_layer,
)
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
    names the field of a dict or object output that holds the logits. A `torch.compile`d model is
    explained through the module it compiled (hooks and layer names live there).

    An exception other than a SalmapError raised while explaining gets the attribute
    `salmap_method` (this method's name), so that a caller can say which method failed.
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
        reshape: Reshape | None = None,
        **settings: Any,
    ) -> Explainer:
        """The explainer for `model` from the registry's arguments; `layer`, `reshape` and
        `checkpoint` are read by the methods that use them."""
        return cls(model, output_key=output_key, **settings)

    def __call__(self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True) -> torch.Tensor:
        return self.explanation(x, target, normalize=normalize).maps

    @contextlib.contextmanager
    def attributed(self) -> Iterator[None]:
        """Tag an exception raised inside with this method's name (`salmap_method`)."""
        try:
            yield
        except Exception as error:
            if getattr(error, "salmap_method", None) is None:
                error.salmap_method = self.name
            raise

    def explanation(
        self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True
    ) -> Explanation:
        """The maps and the target they explain, resolved; `logits` is None here (see
        `with_prediction`)."""
        x = check_images(x)
        if self.model.training:
            raise SalmapError("put the model in eval mode (model.eval()) before explaining it")
        goal = as_target(target, x.shape[0])
        with self.attributed(), gradients_enabled():
            maps = self.explain(x, goal)
        maps = maps.detach().float()
        return Explanation(normalize_maps(maps) if normalize else maps, None, goal)

    def with_prediction(
        self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True
    ) -> Explanation:
        """The maps, the model's logits for `x` and the resolved target. The logits come from the
        method's own forward pass on `x` where it makes one (every method but SmoothGrad with a
        given target and mappers that bypass `model.forward`), so knowing the class and its score
        costs nothing more; otherwise from one extra forward pass. They are None when the
        output holds no logits (a score function explains, say, an embedding in a dict)."""
        x = check_images(x)
        captured: list[torch.Tensor | None] = []

        def keep(_module: nn.Module, args: tuple, output: Any) -> None:
            first = args[0] if args else None
            if (
                not captured
                and isinstance(first, torch.Tensor)
                and first.shape == x.shape
                and first.data_ptr() == x.data_ptr()
            ):
                captured.append(self._logits_or_none(output))

        scripted = isinstance(self.model, torch.jit.ScriptModule)
        handle = None if scripted else self.model.register_forward_hook(keep)
        try:
            explanation = self.explanation(x, target, normalize=normalize)
        finally:
            if handle is not None:
                handle.remove()
        if not captured:
            with self.attributed(), torch.no_grad():
                captured.append(self._logits_or_none(self.model(x)))
        logits = captured[0]
        return explanation._replace(logits=None if logits is None else logits.float())

    def _logits_or_none(self, output: Any) -> torch.Tensor | None:
        try:
            return self.read_logits(output).detach()
        except SalmapError:
            return None

    def prepare(self, x: torch.Tensor) -> dict[str, str]:
        """Make the choices that depend on the model on an example batch `x` (the output field
        that holds the logits, the layer, each method's own checks) and return them
        (`choices()`); a SalmapError when the method cannot explain this model for class targets.
        Explaining makes the same choices on first use; this makes them before any work, so that
        they can be shown and a refusal comes first."""
        x = check_images(x)
        with self.attributed(), gradients_enabled():
            with torch.no_grad():
                self.read_logits(self.model(x))
            self.check(x)
        return self.choices()

    def check(self, x: torch.Tensor) -> None:
        """The method's own checks of the model on `x` (see `prepare`); none by default."""
        return None

    def score(self, target: Target) -> Callable[[Any], torch.Tensor]:
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

    def settings(self) -> dict[str, Any]:
        """The method's settings, as written next to each map."""
        return {}

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """The input size of each pass of the `floor` kind that explaining `x` takes at least."""
        return [(x.shape[-2], x.shape[-1])]

    def choices(self) -> dict[str, str]:
        """The choices made for the user (output field, layer, how the layer is read), to be
        shown."""
        return {"output": self.read_logits.choice} if self.read_logits.choice else {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({settings})"


class LayerExplainer(Explainer):
    """An explainer that reads one layer: given by dotted name or module, or found automatically
    (`find_layer`: `salmap.layers.find_target_layer`, which understands transformer blocks). The
    layer's output is read as feature maps `(B, C, h, w)`: tokens and channels-last outputs are
    understood (see `salmap.layers`), and `reshape(output) -> (B, C, h, w)` replaces the reading
    for a model salmap cannot understand. Subclasses read the layer through `activations` and
    `activations_and_gradients`, which apply the reading."""

    floor = "layer_gradient"
    find_layer: Callable[[nn.Module, torch.Tensor], str] = staticmethod(find_target_layer)

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        output_key: str | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, output_key)
        if reshape is not None and not callable(reshape):
            raise SalmapError(
                f"reshape must be a function of the layer's output, got {type(reshape).__name__}"
            )
        self._layer_spec = layer
        self.reshape = reshape
        self.layer_name: str | None = None
        self.reading: str = ""
        self._module: nn.Module | None = None

    @classmethod
    def build(
        cls,
        model: nn.Module,
        *,
        layer: LayerSpec = None,
        output_key: str | None = None,
        checkpoint: str | Path | None = None,
        reshape: Reshape | None = None,
        **settings: Any,
    ) -> Explainer:
        return cls(model, layer, output_key=output_key, reshape=reshape, **settings)

    def layer(self, x: torch.Tensor) -> nn.Module:
        """The target module, resolved on first use; its output is checked to read as feature
        maps on the first image of `x` (one forward pass), so a layer that cannot be read is
        refused before any work."""
        if self._module is None:
            name, module = resolve_layer(self.model, self._layer_spec, x, self.find_layer)
            outputs: list[Any] = []
            handle = module.register_forward_hook(lambda _m, _i, output: outputs.append(output))
            try:
                with torch.no_grad():
                    self.model(x[:1])
            finally:
                handle.remove()
            if not outputs:
                raise SalmapError(f"layer {name} did not run in the forward pass")
            reading = reading_for(self.model, module, outputs[-1], x[:1], self.reshape)
            self.reading = reading.describe(tuple(outputs[-1].shape))
            self.layer_name, self._module = name, module
        return self._module

    def activations(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The layer's activations `(B, C, h, w)` and the model's output, without autograd."""
        return layer_activations(self.model, self.layer(x), x, self.reshape)

    def activations_and_gradients(
        self, x: torch.Tensor, score: Callable[[Any], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The layer's activations A `(B, C, h, w)`, d score / dA and the model's output."""
        return layer_activations_and_gradients(self.model, self.layer(x), x, score, self.reshape)

    def check(self, x: torch.Tensor) -> None:
        self.layer(x)

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer_name or self._layer_spec}

    def choices(self) -> dict[str, str]:
        chosen = super().choices()
        if self.layer_name is not None:
            chosen["layer"] = self.layer_name + (" (auto)" if self._layer_spec is None else "")
            if self.reading:
                chosen["reading"] = self.reading
        return chosen


def resolve_top1(explainer: Explainer, x: torch.Tensor, target: Target) -> Target:
    """`target` with its top-1 classes fixed by a forward pass without gradient on `x` when none
    were given (a score function or given classes need no pass)."""
    if target.kind == "top1":
        with torch.no_grad():
            target.resolve(explainer.read_logits(explainer.model(x)))
    return target
