"""Pixel-level metrics against a known evidence mask: AUROC and per-object coverage."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from salmap.errors import SalmapError
from salmap.maps import check_maps
from salmap.masks import check_binary
from salmap.metrics.ranking import average_ranks


def _bool_masks(masks: torch.Tensor, maps: torch.Tensor, name: str) -> torch.Tensor:
    masks = torch.as_tensor(masks, device=maps.device)
    if masks.shape != maps.shape:
        raise SalmapError(f"{name} {tuple(masks.shape)} must match the maps {tuple(maps.shape)}")
    return masks.bool()


def pixel_auroc(maps: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of the map's values as scores for the pixels of a ground-truth
    evidence mask `(B, H, W)`, per image `(B,)`. Higher is better (1 perfect, 0.5 chance).

    Exact and rank-based (Mann-Whitney U / (P * N), ties counted one half), equal to
    `sklearn.metrics.roc_auc_score`; NaN for an image whose mask is all one class.
    """
    maps = check_maps(maps)
    positive = _bool_masks(truth, maps, "truth masks").flatten(1)
    ranks = average_ranks(maps.flatten(1))
    positives = positive.sum(dim=1).double()
    negatives = positive.shape[1] - positives
    rank_sum = (ranks * positive).sum(dim=1)
    u = rank_sum - positives * (positives + 1) / 2
    defined = (positives > 0) & (negatives > 0)
    return torch.where(defined, u / (positives * negatives).clamp_min(1), float("nan"))


def object_coverage(
    masks: torch.Tensor, objects: torch.Tensor | Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Per image, the fraction of each evidence object's pixels inside the binary mask:
    |b ∩ o_j| / |o_j| for each object j, one `(n_i,)` tensor per image. Higher is better.

    `masks` are `(B, H, W)` bool (e.g. `salmap.masks.discretize(maps)`); `objects` is
    `(B, n, H, W)` or one `(n_i, H, W)` bool tensor per image.
    """
    masks = check_binary(masks)
    if masks.dtype != torch.bool:
        raise SalmapError("coverage needs binary (bool) masks: discretize the maps first")
    if len(objects) != masks.shape[0]:
        raise SalmapError(f"got objects for {len(objects)} images, expected {masks.shape[0]}")
    fractions = []
    for mask, items in zip(masks, objects, strict=True):
        items = torch.as_tensor(items, device=masks.device).bool()
        if items.dim() == 2:
            items = items.unsqueeze(0)
        if items.dim() != 3 or items.shape[-2:] != mask.shape:
            raise SalmapError(f"objects {tuple(items.shape)} must be (n, H, W) for masks {tuple(mask.shape)}")
        sizes = items.flatten(1).sum(dim=1)
        if bool((sizes == 0).any()):
            raise SalmapError("an evidence object has no pixels")
        inside = (items & mask).flatten(1).sum(dim=1)
        fractions.append(inside.double() / sizes)
    return fractions


def covers_all(coverage: Sequence[torch.Tensor], min_fraction: float = 0.5) -> torch.Tensor:
    """Per image, 1 when every evidence object has at least `min_fraction` of its pixels in the
    mask (the twin test: does the map reveal both copies?), `(B,)` of 0/1. Higher is better."""
    if not 0 <= min_fraction <= 1:
        raise SalmapError(f"min_fraction must be in [0, 1], got {min_fraction}")
    return torch.stack([(c >= min_fraction).all() for c in coverage]).float()
