"""Ranks with ties averaged, batched over rows, and Spearman's rank correlation."""

from __future__ import annotations

import torch

from salmap.errors import SalmapError


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row of `values` `(B, N)`, tied values sharing their mean rank.

    Float64 output, on the input's device.
    """
    if values.dim() != 2 or values.shape[1] == 0:
        raise SalmapError(f"ranking needs a (B, N) tensor with N >= 1, got {tuple(values.shape)}")
    rows, count = values.shape
    ordered, order = torch.sort(values, dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = torch.cumsum(starts.flatten(), dim=0) - 1
    sizes = torch.bincount(group).double()
    positions = torch.arange(count, device=values.device).repeat(rows).double()
    first = positions[starts.flatten()]
    mean_rank = first + (sizes + 1) / 2
    ranks = torch.empty(rows, count, dtype=torch.float64, device=values.device)
    ranks.scatter_(1, order, mean_rank[group].view(rows, count))
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of matching rows of `a` and `b` `(B, N)`, `(B,)`: the Pearson
    correlation of their average ranks; NaN for a constant row (undefined)."""
    if a.shape != b.shape:
        raise SalmapError(f"cannot correlate shapes {tuple(a.shape)} and {tuple(b.shape)}")
    ra = average_ranks(a)
    rb = average_ranks(b.to(a.device))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denominator = (ra.pow(2).sum(dim=1) * rb.pow(2).sum(dim=1)).sqrt()
    return torch.where(denominator > 0, (ra * rb).sum(dim=1) / denominator, float("nan"))
