"""The shared base of every explainer: input checks, target selection, normalisation."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from salmap.errors import SalmapError

Target = int | torch.Tensor | list[int] | None


class MapsAndPrediction(NamedTuple):
    """Maps `(B, H, W)` and the model's logits `(B, classes)` for the same images."""

    maps: torch.Tensor
    logits: torch.Tensor


def logits_of(output: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, the first tensor of a tuple or list,
    `output["logits"]` (or the first tensor value) of a dict, or `output.logits`."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        output = list(output.values())
    elif isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise SalmapError(f"the model returned {type(output).__name__}, which holds no logits tensor")


def check_images(x: torch.Tensor) -> torch.Tensor:
    """Check that `x` is a float batch `(B, C, H, W)` and return it detached from any graph."""
    if not isinstance(x, torch.Tensor):
        raise SalmapError(f"images must be a tensor (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise SalmapError(f"images must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise SalmapError(f"images must be a float tensor normalised for the model, got {x.dtype}")
    if x.shape[0] == 0:
        raise SalmapError("images hold an empty batch")
    if x.is_inference():
        with torch.inference_mode(False):
            return x.clone()
    return x.detach()


def target_indices(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """One class index per image: the top-1 class when `target` is None, else the given ones."""
    batch, classes = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.detach().argmax(dim=-1)
    if isinstance(target, int):
        indices = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    else:
        indices = torch.as_tensor(target, device=logits.device).long().flatten()
        if indices.numel() == 1:
            indices = indices.expand(batch)
        if indices.numel() != batch:
            raise SalmapError(f"got {indices.numel()} targets for a batch of {batch} images")
    if bool(((indices < 0) | (indices >= classes)).any()):
        raise SalmapError(f"target class out of range: the model has {classes} classes (0..{classes - 1})")
    return indices


def class_scores(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The pre-softmax score of each image's class, `(B,)`."""
    if logits.dim() != 2:
        raise SalmapError(f"the model must return logits of shape (B, classes), got {tuple(logits.shape)}")
    return logits.gather(1, indices.view(-1, 1)).squeeze(1)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a `(B, H, W)` batch to [0, 1]: (m - min) / (max - min), zero when flat."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)


@contextlib.contextmanager
def gradients_enabled() -> Iterator[None]:
    """Turn autograd on inside `torch.no_grad()` or `torch.inference_mode()` callers."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class Explainer(ABC):
    """A saliency method: `explainer(x, target=None) -> (B, H, W)` maps in [0, 1].

    `x` is a batch `(B, C, H, W)` normalised for the model; `target` is None (each image's
    top-1 class), an int, or one class per image. `normalize=False` returns the raw map.
    """

    name: str = "explainer"

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise SalmapError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def __call__(self, x: torch.Tensor, target: Target = None, *, normalize: bool = True) -> torch.Tensor:
        x = check_images(x)
        if self.model.training:
            raise SalmapError("put the model in eval mode (model.eval()) before explaining it")
        with gradients_enabled():
            maps = self.explain(x, target)
        maps = maps.detach().float()
        return normalize_maps(maps) if normalize else maps

    def with_prediction(
        self, x: torch.Tensor, target: Target = None, *, normalize: bool = True
    ) -> MapsAndPrediction:
        """The maps and the model's logits for `x`. The logits come from the method's own forward
        pass on `x` where it makes one (every method but SmoothGrad with a given target and
        mappers that bypass `model.forward`), so knowing the class and its score costs nothing
        more; otherwise from one extra forward pass."""
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
                captured.append(logits_of(output).detach())

        scripted = isinstance(self.model, torch.jit.ScriptModule)
        handle = None if scripted else self.model.register_forward_hook(keep)
        try:
            maps = self(x, target, normalize=normalize)
        finally:
            if handle is not None:
                handle.remove()
        if not captured:
            with torch.no_grad():
                captured.append(logits_of(self.model(x)))
        return MapsAndPrediction(maps, captured[0].float())

    def __enter__(self) -> Explainer:
        """Explainers hold no hooks between calls; `with` is accepted for peers' habits."""
        return self

    def __exit__(self, *_: object) -> None:
        return None

    @abstractmethod
    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The raw maps `(B, H, W)` for checked images `x`, autograd enabled."""

    def parameters(self) -> dict[str, Any]:
        """The method's settings, as written next to each map."""
        return {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.parameters().items())
        return f"{type(self).__name__}({settings})"


def resolve_targets(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """One class index per image: the given ones (their range is checked where the scores are
    read), or the top-1 classes from a forward pass without gradient when `target` is None."""
    if target is not None:
        indices = torch.as_tensor(target, device=x.device).long().flatten()
        if indices.numel() == 1:
            indices = indices.expand(x.shape[0])
        if indices.numel() != x.shape[0]:
            raise SalmapError(f"got {indices.numel()} targets for a batch of {x.shape[0]} images")
        return indices
    with torch.no_grad():
        logits = logits_of(model(x))
    return target_indices(None, logits)
