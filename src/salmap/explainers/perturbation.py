"""What the perturbation methods share: the class score of many perturbed copies of a batch,
from forward passes only, in inference mode, a bounded number of images per pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.targets import Target

# what a perturbation method scores: the class's softmax probability or its pre-softmax score
SCORES = ("probability", "logit")


def check_score(score: str) -> str:
    """`score`, checked against `SCORES`."""
    if score not in SCORES:
        raise SalmapError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
    return score


def check_batch_size(batch_size: int | None) -> int | None:
    """`batch_size` (images per forward pass), checked: None or at least 1."""
    if batch_size is not None and batch_size < 1:
        raise SalmapError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size


def images_per_pass(x: torch.Tensor, batch_size: int | None) -> int:
    """Images per forward pass: `batch_size`, or by default one copy of the batch on the CPU,
    where larger batches run slower per image (EfficientNet-Lite0, one thread: 14 ms per image
    alone, 23 ms in batches of 8, 35 ms in batches of 32), and 256 images on a GPU (in inference
    mode a pass keeps no activations, so memory stays small)."""
    return batch_size or (256 if x.is_cuda else x.shape[0])


def copies_per_pass(x: torch.Tensor, target: Target, batch_size: int | None) -> int:
    """Perturbed copies of the batch `x` per forward pass: at least one; exactly one for a score
    function, which sees the output of one copy of the batch at a time."""
    if target.kind == "score":
        return 1
    return max(1, images_per_pass(x, batch_size) // x.shape[0])


def class_scores(
    output: Any, target: Target, read_logits: Callable[[Any], torch.Tensor], probability: bool
) -> torch.Tensor:
    """`(B,)` scores of a resolved `target`: the softmax probability of each image's class (the
    sum over a class set) when `probability`, else its pre-softmax score; a score function's
    own value."""
    if target.kind == "score":
        return target.scores(output, read_logits)
    logits = read_logits(output)
    values = logits.float().softmax(dim=-1) if probability else logits
    return target.scores(values, lambda scores: scores)


def perturbed_scores(
    model: nn.Module,
    read_logits: Callable[[Any], torch.Tensor],
    x: torch.Tensor,
    target: Target,
    copies: int,
    make: Callable[[int, int], torch.Tensor],
    *,
    probability: bool,
    batch_size: int | None = None,
) -> torch.Tensor:
    """`(copies, B)`: the score of every perturbed copy of the batch `x`. `make(start, stop)`
    returns copies `start` to `stop - 1`, shaped `(stop - start, B, C, H, W)`; they go through the
    model a bounded number at a time (`copies_per_pass`), so memory does not grow with `copies`.
    `target` must be resolved (no pending top-1)."""
    if target.kind == "top1":
        raise SalmapError("resolve the target before scoring perturbed copies")
    per_pass = copies_per_pass(x, target, batch_size)
    batch = x.shape[0]
    repeated = {}
    chunks = []
    with torch.inference_mode():
        for start in range(0, copies, per_pass):
            stop = min(copies, start + per_pass)
            count = stop - start
            if count not in repeated:
                repeated[count] = target if count == 1 else target.repeat(count)
            output = model(make(start, stop).flatten(0, 1))
            chunks.append(class_scores(output, repeated[count], read_logits, probability).view(count, batch))
    return torch.cat(chunks).float()
