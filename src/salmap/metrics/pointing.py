"""Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop")."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from salmap.boxes import as_box_list
from salmap.errors import SalmapError
from salmap.maps import check_maps


def map_peaks(maps: torch.Tensor) -> torch.Tensor:
    """The `(x, y)` pixel of each map's maximum, `(B, 2)` long (the first one in row-major
    order when several pixels tie)."""
    maps = check_maps(maps)
    index = maps.flatten(1).argmax(dim=1)
    width = maps.shape[-1]
    return torch.stack([index % width, index // width], dim=1)


def pointing_hits(
    maps: torch.Tensor,
    boxes: torch.Tensor | Sequence[torch.Tensor] | None = None,
    object_masks: torch.Tensor | Sequence[torch.Tensor] | None = None,
    tolerance: float = 15.0,
) -> torch.Tensor:
    """Per image, 1 when the map's maximum lies within `tolerance` px (Euclidean) of the object:
    some pixel of one of its boxes, or of its pixel mask, is at a distance strictly below
    `tolerance` (Zhang 2016; TorchRay's benchmark accepts `d^2 < tolerance^2`), `(B,)` of 0/1.

    Give `boxes` (one `(n_i, 4)` per image) or `object_masks` (`(B, H, W)` or one `(n_i, H, W)`
    per image; pixel masks are the more exact object extent when known). Higher is better.
    """
    maps = check_maps(maps)
    if (boxes is None) == (object_masks is None):
        raise SalmapError("give either boxes or object_masks for the pointing game")
    if tolerance < 0:
        raise SalmapError(f"tolerance must be >= 0, got {tolerance}")
    peaks = map_peaks(maps).double()
    squared = []
    if boxes is not None:
        for (x, y), items in zip(peaks, as_box_list(boxes, maps.shape[0]), strict=True):
            items = items.to(maps.device).double()
            dx = torch.clamp(torch.maximum(items[:, 0] - x, x - (items[:, 2] - 1)), min=0)
            dy = torch.clamp(torch.maximum(items[:, 1] - y, y - (items[:, 3] - 1)), min=0)
            squared.append((dx.pow(2) + dy.pow(2)).min())
    else:
        if len(object_masks) != maps.shape[0]:
            raise SalmapError(f"got object masks for {len(object_masks)} images, expected {maps.shape[0]}")
        for (x, y), mask in zip(peaks, object_masks, strict=True):
            mask = torch.as_tensor(mask, device=maps.device).bool()
            if mask.shape[-2:] != maps.shape[-2:]:
                raise SalmapError(f"object mask {tuple(mask.shape)} does not match maps {tuple(maps.shape)}")
            points = mask.reshape(-1, *mask.shape[-2:]).any(dim=0).nonzero().double()
            if points.shape[0] == 0:
                raise SalmapError("an object mask is empty")
            squared.append(((points[:, 1] - x).pow(2) + (points[:, 0] - y).pow(2)).min())
    return (torch.stack(squared) < tolerance**2).float()


def pointing_accuracy(hits: torch.Tensor, labels: torch.Tensor) -> float:
    """Pointing-game accuracy averaged over classes (Zhang 2016): the mean over the classes
    present of each class's hit rate. Higher is better."""
    hits = torch.as_tensor(hits).flatten().double()
    labels = torch.as_tensor(labels).flatten().to(hits.device)
    if hits.shape != labels.shape or hits.numel() == 0:
        raise SalmapError(f"need one label per hit, got {labels.numel()} labels, {hits.numel()} hits")
    rates = [hits[labels == label].mean() for label in labels.unique()]
    return float(torch.stack(rates).mean())
