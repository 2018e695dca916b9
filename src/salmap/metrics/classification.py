"""How classifiers see masked images (CASM paper, Zolna et al. 2019, Table 1 and 2).

A good mask keeps the class in the masked-in image `b*x` and removes it from the masked-out
image `(1-b)*x`, also after inpainting (which hides the mask's shape from the classifier). The
all-zero, all-one and random masks give the reference rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.masks import (
    check_binary,
    inpaint_masked_out,
    masked_in,
    masked_out,
)
from salmap.models.transforms import to_normalized, to_pixels
from salmap.targets import logits_of

VARIANTS = ("masked_in", "masked_out", "inpainted")
MASK_KINDS = ("map", "zeros", "ones", "random")


@dataclass
class Predictions:
    """Per image `(B,)`: top-1 and top-5 correct (0/1) and the prediction entropy in nats."""

    top1: torch.Tensor
    top5: torch.Tensor
    entropy: torch.Tensor


def classify(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 64
) -> Predictions:
    """Top-1 / top-5 correctness (top-k with k capped at the class count) and the entropy
    -sum p log p of the softmax prediction, per image. Accuracy: higher is better."""
    if model.training:
        raise SalmapError("put the model in eval mode (model.eval()) before classifying")
    labels = torch.as_tensor(labels, device=images.device).long().flatten()
    if labels.numel() != images.shape[0]:
        raise SalmapError(f"got {labels.numel()} labels for {images.shape[0]} images")
    if batch_size < 1:
        raise SalmapError(f"batch_size must be >= 1, got {batch_size}")
    with torch.no_grad():
        logits = torch.cat([logits_of(model(chunk)).float() for chunk in images.split(batch_size)])
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = top == labels.unsqueeze(1)
    log_p = logits.log_softmax(dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return Predictions(hits[:, 0].float(), hits.any(dim=1).float(), entropy)


def random_masks_like(masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool masks with the area of each image's mask (rounded sum for soft masks), pixels drawn
    uniformly at random."""
    masks = check_binary(masks)
    batch = masks.shape[0]
    flat = masks.reshape(batch, -1)
    area = flat.float().sum(dim=1, keepdim=True).round()
    noise = torch.rand(flat.shape, generator=generator).to(masks.device)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return (ranks < area).view(masks.shape)


def masked_classification(
    classifiers: Mapping[str, nn.Module],
    images: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    variants: Sequence[str] = VARIANTS,
    seed: int = 0,
    batch_size: int = 64,
    radius: int = 3,
    fill: float = 0.0,
) -> dict[tuple[str, str, str], Predictions]:
    """Classify masked-in, masked-out and inpainted masked-out images with each classifier.

    `images` are normalised `(B, C, H, W)`, `masks` bool `(B, H, W)` (True = evidence). Keys are
    `(classifier name, variant, mask kind)`, mask kind in `MASK_KINDS`: the given masks, all
    zero, all one, and random masks of the same area per image (seeded by `seed`). Removed pixels
    take the value `fill` (normalised space; 0 is the mean colour). Inpainting
    works on pixels, so "inpainted" needs the normalisation `mean` and `std`. For masked-out
    images lower accuracy is better; for masked-in images higher is better.
    """
    masks = check_binary(masks, images)
    if masks.dtype != torch.bool:
        raise SalmapError("masked classification needs binary (bool) masks: discretize first")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SalmapError(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    if "inpainted" in variants and (mean is None or std is None):
        raise SalmapError("the inpainted variant needs the normalisation mean and std")
    if not classifiers:
        raise SalmapError("give at least one classifier")
    generator = torch.Generator().manual_seed(seed)
    kinds = {
        "map": masks,
        "zeros": torch.zeros_like(masks),
        "ones": torch.ones_like(masks),
        "random": random_masks_like(masks, generator),
    }
    results: dict[tuple[str, str, str], Predictions] = {}
    for kind, mask in kinds.items():
        for variant in variants:
            if variant == "masked_in":
                batch = masked_in(images, mask, fill)
            elif variant == "masked_out":
                batch = masked_out(images, mask, fill)
            else:
                filled = inpaint_masked_out(to_pixels(images, mean, std), mask, radius)
                batch = to_normalized(filled, mean, std)
            for name, model in classifiers.items():
                results[(name, variant, kind)] = classify(model, batch, labels, batch_size=batch_size)
    return results
