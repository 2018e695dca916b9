"""Model outputs and targets: which tensor of a model's output holds the logits, and what score
each image's map explains.

A target is given as
- `None`: each image's top-1 class, fixed by the first output it is scored on;
- an int: one class for every image;
- a sequence or 1-D integer tensor of one class per image;
- a sequence of class collections, one per image (multi-label: the sum of their scores), or a
  2-D boolean tensor `(B, classes)` marking them;
- a callable `f(output) -> (B,)` scores of the model's raw output (detection scores, a
  segmentation mask's mean, the similarity of an embedding to a reference...). It always receives
  the output of a batch of the same B images, in their order.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from salmap.errors import SalmapError

ScoreFunction = Callable[[Any], torch.Tensor]
TargetSpec = int | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | ScoreFunction | None


def _tensors_of(output: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(output, dict):
        return [(f"key {key!r}", value) for key, value in output.items() if isinstance(value, torch.Tensor)]
    if isinstance(output, (tuple, list)):
        return [(f"element {i}", value) for i, value in enumerate(output) if isinstance(value, torch.Tensor)]
    return []


@dataclass
class OutputReader:
    """Reads the logits from a model's output: a tensor; `output[key]` (or `output.key`) when a
    key is given; otherwise a `logits` field or attribute, or the only tensor of a dict, tuple or
    list, or the first tensor of a tuple or list. A dict with several tensors and no `logits`
    is ambiguous and refused. `choice` says which field was read when there was a choice."""

    key: str | None = None
    choice: str | None = field(default=None, init=False)

    def __call__(self, output: Any) -> torch.Tensor:
        logits, choice = self._read(output)
        if choice is not None:
            self.choice = choice
        return logits

    def _read(self, output: Any) -> tuple[torch.Tensor, str | None]:
        if self.key is not None:
            value = output.get(self.key) if isinstance(output, dict) else getattr(output, self.key, None)
            if not isinstance(value, torch.Tensor):
                raise SalmapError(
                    f"the model's output has no tensor field {self.key!r}; {self._fields(output)}"
                )
            return value, f"field {self.key!r} (given)"
        if isinstance(output, torch.Tensor):
            return output, None
        if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
            return output["logits"], "key 'logits'"
        if not isinstance(output, dict) and isinstance(getattr(output, "logits", None), torch.Tensor):
            return output.logits, "attribute 'logits'"
        tensors = _tensors_of(output)
        if len(tensors) == 1:
            return tensors[0][1], f"{tensors[0][0]}, the only tensor"
        if tensors and isinstance(output, (tuple, list)):
            return tensors[0][1], f"{tensors[0][0]} of a {type(output).__name__} of {len(tensors)} tensors"
        if isinstance(output, dict) and tensors:
            raise SalmapError(
                f"the model returns a dict with {', '.join(name for name, _ in tensors)} and no 'logits': "
                "choose the scores with output_key= (--output-key)"
            )
        raise SalmapError(f"the model returned {type(output).__name__}, which holds no logits tensor")

    @staticmethod
    def _fields(output: Any) -> str:
        tensors = _tensors_of(output)
        if tensors:
            return "it holds " + ", ".join(name for name, _ in tensors)
        return f"it is a {type(output).__name__}"


def logits_of(output: Any, key: str | None = None) -> torch.Tensor:
    """The logits in a model's output (see `OutputReader`)."""
    return OutputReader(key)(output)


def _integer_tensor(values: Any, what: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise SalmapError(f"{what} must be integer class indices, got {values!r}"[:200]) from None
    if tensor.numel() == 0:
        return tensor.long()
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise SalmapError(f"{what} must be integer class indices, got {tensor.dtype} values {values!r}"[:200])
    return tensor.long()


class Target:
    """One call's target, checked against the batch: class indices, class sets, or a score
    function (see the module's docstring). Scoring an output with `scores` resolves the top-1
    classes the first time when no target was given, and keeps them for the later outputs of the
    same call (noisy copies, other input sizes)."""

    def __init__(self, spec: TargetSpec, batch: int) -> None:
        self.batch = batch
        self.classes: torch.Tensor | None = None
        self.sets: list[list[int]] | None = None
        self.function: ScoreFunction | None = None
        self.given = spec is not None
        if spec is None:
            return
        if isinstance(spec, bool):
            raise SalmapError("a target must be a class index, not a boolean")
        if callable(spec) and not isinstance(spec, torch.Tensor):
            self.function = spec
            return
        if isinstance(spec, (numbers.Number, np.ndarray)):
            spec = torch.as_tensor(spec)
        if isinstance(spec, torch.Tensor) and spec.dim() == 2:
            rows = spec.bool() if spec.dtype == torch.bool else _integer_tensor(spec, "class sets")
            self.sets = [
                row.nonzero().flatten().tolist() if rows.dtype == torch.bool else row.tolist() for row in rows
            ]
        elif isinstance(spec, torch.Tensor) or (
            isinstance(spec, Sequence) and not isinstance(spec, str) and all(map(_is_index, spec))
        ):
            indices = _integer_tensor(spec, "targets").flatten()
            self.classes = indices.expand(batch) if indices.numel() == 1 else indices
        elif isinstance(spec, Sequence) and not isinstance(spec, str):
            collections = (Sequence, set, frozenset, torch.Tensor, np.ndarray)
            if not all(isinstance(item, collections) and not isinstance(item, str) for item in spec):
                raise SalmapError(
                    "a target list holds one class index per image or one collection of classes per "
                    f"image, not both: {spec!r}"[:200]
                )
            self.sets = [_integer_tensor(list(item), "class sets").flatten().tolist() for item in spec]
        else:
            raise SalmapError(
                f"unknown target {type(spec).__name__}: give a class index, one per image, a set of "
                "classes per image or a function of the model's output"
            )
        count = len(self.sets) if self.sets is not None else self.classes.numel()
        if count != batch:
            raise SalmapError(f"got {count} targets for a batch of {batch} images")
        if self.sets is not None and any(not chosen for chosen in self.sets):
            raise SalmapError("every image needs at least one class in its class set")

    @property
    def kind(self) -> str:
        """ "top1" (not resolved yet), "class", "classes" (multi-label) or "score" (a function)."""
        if self.function is not None:
            return "score"
        if self.sets is not None:
            return "classes"
        return "class" if self.classes is not None else "top1"

    def resolve(self, logits: torch.Tensor) -> None:
        """Fix the top-1 classes from `logits` when no target was given; check the range."""
        _check_logits(logits, self.batch)
        if self.kind == "top1":
            self.classes = logits.detach().argmax(dim=-1)
        classes = logits.shape[-1]
        chosen = (
            self.classes
            if self.classes is not None
            else torch.tensor([c for chosen in self.sets or [] for c in chosen])
        )
        if chosen.numel() and bool(((chosen < 0) | (chosen >= classes)).any()):
            raise SalmapError(
                f"target class out of range: the model has {classes} classes (0..{classes - 1})"
            )

    def weights(self, classes: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """`(B, classes)`: 1 for each image's class or classes, 0 elsewhere (after `resolve`)."""
        weights = torch.zeros(self.batch, classes, device=device, dtype=dtype)
        if self.classes is not None:
            return weights.scatter_(1, self.classes.to(device).view(-1, 1), 1.0)
        if self.sets is None:
            raise SalmapError("a score-function target has no class weights; use a gradient method")
        for row, chosen in enumerate(self.sets):
            weights[row, chosen] = 1.0
        return weights

    def scores(self, output: Any, read_logits: Callable[[Any], torch.Tensor] = logits_of) -> torch.Tensor:
        """`(B,)` scores to explain: the pre-softmax score of each image's class, the sum over its
        class set, or the score function's value."""
        if self.function is not None:
            scores = self.function(output)
            if not isinstance(scores, torch.Tensor) or scores.shape != (self.batch,):
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise SalmapError(
                    f"the target function must return one score per image, shape ({self.batch},), got {shape}"
                )
            return scores
        logits = read_logits(output)
        self.resolve(logits)
        if self.classes is not None:
            return logits.gather(1, self.classes.to(logits.device).view(-1, 1)).squeeze(1)
        return (logits * self.weights(logits.shape[-1], logits.device, logits.dtype)).sum(dim=1)

    def repeat(self, copies: int) -> Target:
        """The same target for `copies` stacked copies of the batch (copy-major order)."""
        if self.kind in ("top1", "score"):
            raise SalmapError("resolve the target before repeating it; score functions cannot be repeated")
        repeated = Target(None, self.batch * copies)
        repeated.given = self.given
        if self.classes is not None:
            repeated.classes = self.classes.repeat(copies)
        else:
            repeated.sets = (self.sets or []) * copies
        return repeated

    def describe(self, index: int) -> int | list[int] | None:
        """Image `index`'s class, its class set, or None for a score function."""
        if self.classes is not None:
            return int(self.classes[index])
        return list(self.sets[index]) if self.sets is not None else None


def _is_index(item: Any) -> bool:
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return item.ndim == 0
    return isinstance(item, (numbers.Number, np.generic))


def _check_logits(logits: torch.Tensor, batch: int) -> None:
    if logits.dim() != 2 or logits.shape[0] != batch:
        raise SalmapError(
            f"the model must return logits of shape ({batch}, classes), got {tuple(logits.shape)}; "
            "choose the output field with output_key= or explain a score function as the target"
        )


def as_target(spec: TargetSpec | Target, batch: int) -> Target:
    """`spec` checked into a `Target` for a batch of `batch` images (a `Target` is kept)."""
    if isinstance(spec, Target):
        if spec.batch != batch:
            raise SalmapError(f"got {spec.batch} targets for a batch of {batch} images")
        return spec
    return Target(spec, batch)


def target_indices(target: TargetSpec | Target, logits: torch.Tensor) -> torch.Tensor:
    """One class index per image: the top-1 class of `logits` when `target` is None, else the
    given ones, range-checked. Class sets and score functions are refused."""
    resolved = as_target(target, logits.shape[0])
    if resolved.kind not in ("top1", "class"):
        raise SalmapError("this needs one class index per image, not class sets or a score function")
    resolved.resolve(logits)
    return resolved.classes.to(logits.device)
