"""Deletion and insertion (RISE, Petsiuk et al. 2018): does the class score follow the map?

Pixels are changed in order of decreasing saliency, a fixed number per step, and the softmax
probability of the class is recorded after each step; the score is the area under that curve
(trapezoid rule over the fraction of pixels changed, so it lies in [0, 1]). The (image, step)
pairs are evaluated in chunks of `batch_size` images, which bounds memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salmap.errors import SalmapError
from salmap.maps import check_maps
from salmap.targets import TargetSpec as Target
from salmap.targets import logits_of, target_indices


@dataclass
class CausalCurve:
    """Per-image AUC `(B,)`, the curves `(B, steps + 1)` of class probabilities, and the
    fraction of pixels changed at each point `(steps + 1,)` (the x axis, for plotting)."""

    auc: torch.Tensor
    curve: torch.Tensor
    fractions: torch.Tensor


SUBSTRATES = ("rise", "replicate")


def rise_kernel(kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's `gkern` (Petsiuk et al. 2018, the authors' code): a `kernel_size`-square delta
    smoothed by `scipy.ndimage.gaussian_filter` with `sigma` (its defaults: reflected edges, the
    Gaussian cut at 4 sigma). With sigma 5 the Gaussian is wider than the 11 px square, so the
    reflections fold its tails back in: the kernel is flatter than a truncated Gaussian, sums to
    1, float32 `(kernel_size, kernel_size)`."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((kernel_size, kernel_size))
    delta[kernel_size // 2, kernel_size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma).astype(np.float32))


def gaussian_blur(
    images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0, substrate: str = "rise"
) -> torch.Tensor:
    """Gaussian blur of `(B, C, H, W)` images, each channel alone. `substrate="rise"` (RISE's
    insertion start): `rise_kernel` with zero padding, so the edges fade towards zero in
    normalised space; `"replicate"`: a truncated Gaussian normalised to sum 1, edges padded by
    replication (no fade at the edges)."""
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise SalmapError(f"blur needs an odd kernel size and sigma > 0, got {kernel_size}, {sigma}")
    if substrate not in SUBSTRATES:
        raise SalmapError(f"unknown substrate {substrate!r}; use {' or '.join(SUBSTRATES)}")
    radius = kernel_size // 2
    channels = images.shape[1]
    if substrate == "rise":
        kernel = rise_kernel(kernel_size, sigma).to(device=images.device, dtype=images.dtype)
        weight = kernel.view(1, 1, kernel_size, kernel_size).expand(channels, 1, kernel_size, kernel_size)
        return F.conv2d(images, weight, padding=radius, groups=channels)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    rows = weights.view(1, 1, 1, -1).expand(channels, 1, 1, kernel_size)
    columns = weights.view(1, 1, -1, 1).expand(channels, 1, kernel_size, 1)
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(F.conv2d(padded, rows, groups=channels), columns, groups=channels)


def _prepare(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: Target
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(model, nn.Module):
        raise SalmapError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise SalmapError("put the model in eval mode (model.eval()) before scoring maps")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise SalmapError("images must be a float tensor (B, C, H, W) normalised for the model")
    maps = check_maps(maps).to(images.device)
    if maps.shape != (images.shape[0], *images.shape[-2:]):
        raise SalmapError(f"maps {tuple(maps.shape)} must be (B, H, W) of images {tuple(images.shape)}")
    images = images.detach()
    with torch.no_grad():
        classes = target_indices(target, logits_of(model(images)))
    return images, maps, classes


def _causal_curve(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    steps: int | None,
    batch_size: int,
) -> CausalCurve:
    batch, _, height, width = start.shape
    pixels = height * width
    steps = height if steps is None else steps
    if not 1 <= steps <= pixels:
        raise SalmapError(f"steps must be in 1..{pixels} (pixels per image), got {steps}")
    if batch_size < 1:
        raise SalmapError(f"batch_size must be >= 1, got {batch_size}")
    device = start.device
    per_step = math.ceil(pixels / steps)
    changed = (torch.arange(steps + 1, device=device) * per_step).clamp(max=pixels)
    order = torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(pixels, device=device).expand(batch, pixels).contiguous()
    )
    image_index = torch.arange(batch, device=device).repeat_interleave(steps + 1)
    step_index = torch.arange(steps + 1, device=device).repeat(batch)
    scores = torch.empty(batch * (steps + 1), dtype=torch.float64, device=device)
    with torch.no_grad():
        for first in range(0, scores.numel(), batch_size):
            chunk = slice(first, first + batch_size)
            i, k = image_index[chunk], step_index[chunk]
            replace = (ranks[i] < changed[k].unsqueeze(1)).view(-1, 1, height, width)
            perturbed = torch.where(replace, finish[i], start[i])
            probabilities = logits_of(model(perturbed)).float().softmax(dim=1)
            scores[chunk] = probabilities.gather(1, classes[i].view(-1, 1)).squeeze(1).double()
    curve = scores.view(batch, steps + 1)
    fractions = changed.double() / pixels
    return CausalCurve(torch.trapezoid(curve, fractions, dim=1).float(), curve.float(), fractions.float())


def deletion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    steps: int | None = None,
    batch_size: int = 64,
    fill: float = 0.0,
) -> CausalCurve:
    """Deletion AUC (RISE, Petsiuk 2018): starting from the image, the most salient pixels are set
    to `fill` (normalised space; the default 0 is the mean colour), `ceil(H*W / steps)` per step
    (default steps = H: 224 steps for 224x224); curve = softmax probability of the class
    (`target`; None: the top-1 of the clean image, as RISE). Lower is better (the evidence was
    where the map said).
    """
    images, maps, classes = _prepare(model, images, maps, target)
    return _causal_curve(model, images, torch.full_like(images, fill), maps, classes, steps, batch_size)


def insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    steps: int | None = None,
    batch_size: int = 64,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    substrate: str = "rise",
) -> CausalCurve:
    """Insertion AUC (RISE, Petsiuk 2018): starting from a Gaussian-blurred image (RISE's
    substrate: `gaussian_blur(..., substrate="rise")`, kernel 11, sigma 5, zero padding), the
    true pixels are revealed most salient first, `ceil(H*W / steps)` per step; curve = softmax
    probability of the class (`target`; None: the top-1 of the clean image, as RISE). Higher is
    better. `substrate="replicate"` starts from a blur whose edges do not fade towards zero.
    """
    images, maps, classes = _prepare(model, images, maps, target)
    blurred = gaussian_blur(images, blur_kernel, blur_sigma, substrate)
    return _causal_curve(model, blurred, images, maps, classes, steps, batch_size)
