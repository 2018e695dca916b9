"""Mask statistics (CASM paper, Zolna et al. 2019, Table 1): size, entropy, smoothness.

Each is per image, `(B,)`; aggregate over images yourself. The spread of mask sizes across
images is `mask_mean(maps).std()` (summarised by `summarize_mask_statistics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from salmap.maps import check_maps


def mask_mean(maps: torch.Tensor) -> torch.Tensor:
    """Mean mask value per image, sum(m) / (H*W): the fraction of the image kept as evidence.

    Descriptive: a smaller mask is more specific, too small misses evidence.
    """
    return check_maps(maps).mean(dim=(1, 2))


def mask_entropy(maps: torch.Tensor) -> torch.Tensor:
    """Entropy as SPEC section 3 defines it: sum over pixels of -m log2 m, divided by H*W
    (0 log 0 = 0).

    This is the one-sided term, not the binary entropy -m log2 m - (1-m) log2(1-m): it is 0 at
    m = 0 and m = 1 and peaks at m = 1/e (0.53 bits). Lower means a more decisive (binary) mask.
    """
    maps = check_maps(maps)
    terms = torch.where(maps > 0, -maps * torch.log2(maps.clamp_min(1e-30)), 0.0)
    return terms.mean(dim=(1, 2))


def mask_total_variation(maps: torch.Tensor) -> torch.Tensor:
    """Total variation: mean over pixels of (m[i, j+1] - m[i, j])^2 plus mean of
    (m[i+1, j] - m[i, j])^2. Lower means a smoother mask."""
    maps = check_maps(maps)
    horizontal = (maps[:, :, 1:] - maps[:, :, :-1]).pow(2).flatten(1)
    vertical = (maps[:, 1:, :] - maps[:, :-1, :]).pow(2).flatten(1)
    zero = maps.new_zeros(maps.shape[0])
    h = horizontal.mean(dim=1) if horizontal.shape[1] else zero
    v = vertical.mean(dim=1) if vertical.shape[1] else zero
    return h + v


@dataclass
class MaskStatistics:
    """Per-image mask mean, entropy and total variation, each `(B,)`."""

    mean: torch.Tensor
    entropy: torch.Tensor
    total_variation: torch.Tensor


def mask_statistics(maps: torch.Tensor) -> MaskStatistics:
    """All per-image mask statistics of a batch of maps."""
    return MaskStatistics(mask_mean(maps), mask_entropy(maps), mask_total_variation(maps))


def summarize_mask_statistics(stats: MaskStatistics) -> dict[str, float]:
    """Dataset summary: mean mask, sample std across images of the per-image mean, mean entropy
    and mean TV."""
    return {
        "mask_mean": float(stats.mean.mean()),
        "mask_std": float(stats.mean.std()) if stats.mean.numel() > 1 else 0.0,
        "entropy": float(stats.entropy.mean()),
        "total_variation": float(stats.total_variation.mean()),
    }
