"""RISE (Petsiuk, Das and Saenko 2018, "RISE: Randomized input sampling for explanation of
black-box models")."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.registry import Option, register
from salmap.targets import Target

from .base import Explainer, resolve_top1
from .perturbation import check_batch_size, check_score, perturbed_scores

# masks made at once when summing the weighted masks
MASK_BLOCK = 256


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) mirrored about the edge pixels (d c b | a b c d | c b a)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)


def upsampling_matrix(cells: int, cell_size: int, like: torch.Tensor) -> torch.Tensor:
    """`((cells + 1) * cell_size, cells)`: linear interpolation of `cells` values to
    `(cells + 1) * cell_size` pixels with pixel centres at half-integers and the grid mirrored
    at its edges: row u interpolates at grid position (u + 0.5) * cells / size - 0.5. This is
    scikit-image's `resize(order=1, mode="reflect", anti_aliasing=False)`, which the RISE
    authors use."""
    size = (cells + 1) * cell_size
    position = (torch.arange(size, device=like.device, dtype=torch.float64) + 0.5) * cells / size - 0.5
    low = position.floor()
    fraction = (position - low).to(like.dtype)
    low = low.long()
    matrix = torch.zeros(size, cells, device=like.device, dtype=like.dtype)
    rows = torch.arange(size, device=like.device)
    matrix.index_put_((rows, _reflect(low, cells)), 1 - fraction, accumulate=True)
    matrix.index_put_((rows, _reflect(low + 1, cells)), fraction, accumulate=True)
    return matrix


class RiseMasks:
    """The N random masks of RISE for inputs of `size`, drawn once from `seed` and upsampled a
    chunk at a time (Petsiuk et al. 2018, Sec. 3.2): a binary `cells` x `cells` grid whose cells
    are 1 with probability `p`, upsampled bilinearly to (cells + 1) * ceil(size / cells) pixels
    and cropped to `size` at a random shift of 0 to ceil(size / cells) - 1 pixels per axis.
    The grids and shifts are drawn up front (N * cells^2 bits); the upsampled masks are made only
    for the chunk asked for, so memory does not grow with N."""

    def __init__(self, n: int, cells: int, p: float, seed: int, size: tuple[int, int], like: torch.Tensor):
        generator = torch.Generator().manual_seed(seed)
        height, width = size
        self.size = size
        self.cell = (math.ceil(height / cells), math.ceil(width / cells))
        self.grids = (torch.rand((n, cells, cells), generator=generator) < p).to(like.device, like.dtype)
        shifts = torch.rand((n, 2), generator=generator)
        self.shifts = torch.stack(
            [(shifts[:, 0] * self.cell[0]).long(), (shifts[:, 1] * self.cell[1]).long()], dim=1
        ).to(like.device)
        self.rows = upsampling_matrix(cells, self.cell[0], like)
        self.columns = upsampling_matrix(cells, self.cell[1], like)

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        """Masks `start` to `stop - 1`, `(stop - start, H, W)` in [0, 1]."""
        height, width = self.size
        shifts = self.shifts[start:stop]
        rows = self.rows[shifts[:, :1] + torch.arange(height, device=shifts.device)]
        columns = self.columns[shifts[:, 1:] + torch.arange(width, device=shifts.device)]
        return rows @ self.grids[start:stop] @ columns.transpose(1, 2)


@register(
    "rise",
    "perturbation",
    options=[
        Option("n", int, 4000, "random masks", speed_default=200),
        Option("cells", int, 7, "cells per side of the random grid (the paper's s)"),
        Option("p", float, 0.5, "probability that a grid cell is kept"),
        Option("seed", int, 0, "seed of the masks"),
        Option("baseline", float, 0.0, "value of masked pixels in normalised space (0: the mean colour)"),
        Option("score", str, "probability", "probability (as in the paper) or logit"),
    ],
)
class RISE(Explainer):
    """RISE: random masks weighted by the class probability of the masked image (Petsiuk 2018).

    map = (1 / (N p)) sum_i P_c(x * M_i) M_i over N random masks M_i (see `RiseMasks`: s x s
    binary grids kept with probability p, bilinearly upsampled with a random shift), P_c the
    softmax probability of the class as in the paper (`score="logit"`: the pre-softmax score).
    The masked image is M x + (1 - M) b in the model's normalised space: the paper dims the
    pixels "down to zero", and the authors' code multiplies the normalised tensor, so b = 0, the
    data set's mean colour, by default; `baseline` sets b (black is -mean / std, which suits
    images whose background is black). Every image of a call sees
    the same masks, drawn from `seed`. Forward passes only, in inference mode, `batch_size`
    images per pass (default: one copy of the batch on the CPU, 256 images on a GPU), so memory
    does not grow with N.
    """

    floor = "forward"

    def __init__(
        self,
        model: nn.Module,
        n: int = 4000,
        cells: int = 7,
        p: float = 0.5,
        seed: int = 0,
        baseline: float = 0.0,
        score: str = "probability",
        batch_size: int | None = None,
        output_key: str | None = None,
    ) -> None:
        super().__init__(model, output_key)
        if n < 1 or cells < 1:
            raise SalmapError(f"RISE needs n >= 1 masks and cells >= 1, got n={n}, cells={cells}")
        if not 0 < p <= 1:
            raise SalmapError(f"RISE's keep probability p must lie in (0, 1], got {p}")
        self.n = n
        self.cells = cells
        self.p = p
        self.seed = seed
        self.baseline = baseline
        self.score_kind = check_score(score)
        self.batch_size = check_batch_size(batch_size)

    def masks(self, x: torch.Tensor) -> RiseMasks:
        """The masks for inputs shaped like `x`."""
        return RiseMasks(self.n, self.cells, self.p, self.seed, (x.shape[-2], x.shape[-1]), x)

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        return [(x.shape[-2], x.shape[-1])] * self.n

    def masked(self, masks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`(k, B, C, H, W)`: M x + (1 - M) b for each of the masks `(k, H, W)`."""
        masks = masks[:, None, None]
        images = masks * x.unsqueeze(0)
        return images if self.baseline == 0 else images + (1 - masks) * self.baseline

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        target = resolve_top1(self, x, target)
        masks = self.masks(x)
        scores = perturbed_scores(
            self.model,
            self.read_logits,
            x,
            target,
            self.n,
            lambda start, stop: self.masked(masks(start, stop), x),
            probability=self.score_kind == "probability",
            batch_size=self.batch_size,
        )
        # the weighted sum regenerates the masks a block at a time: two small matrix products
        # per mask, against a forward pass of the model per mask and image
        total = x.new_zeros(x.shape[0], x.shape[-2] * x.shape[-1], dtype=torch.float32)
        for start in range(0, self.n, MASK_BLOCK):
            stop = min(self.n, start + MASK_BLOCK)
            total += scores[start:stop].T @ masks(start, stop).flatten(1).float()
        return total.view(x.shape[0], *x.shape[-2:]) / (self.n * self.p)

    def settings(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "cells": self.cells,
            "p": self.p,
            "seed": self.seed,
            "baseline": self.baseline,
            "score": self.score_kind,
        }
