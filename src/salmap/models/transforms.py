"""Image preprocessing for classifiers: resize the shorter side, centre crop, normalise; and
the way back from normalised images to pixels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision.transforms.v2 as T
from PIL import Image

from salmap.errors import SalmapError
from salmap.inputs import check_batch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def classifier_transform(
    resize: int | None,
    crop: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised `(C, H, W)` tensor: resize the shorter side to `resize` (or the
    whole image to `crop` when `resize` is None), centre crop to `crop`, (v - mean) / std."""
    mode = T.InterpolationMode[interpolation.upper()]
    steps: list[T.Transform] = (
        [T.Resize(resize, interpolation=mode, antialias=True), T.CenterCrop(crop)]
        if resize is not None
        else [T.Resize(crop, interpolation=mode, antialias=True)]
    )
    steps += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]
    return T.Compose(steps)


def crop_geometry(
    image_size: tuple[int, int], resize: int | None, crop: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """For an image of (height, width): the size after the shorter-side resize and the
    (top, left) corner of the centre crop, as torchvision computes them."""
    height, width = image_size
    if resize is None:
        return crop, (0, 0)
    if height <= width:
        resized = (resize, int(resize * width / height))
    else:
        resized = (int(resize * height / width), resize)
    top = round((resized[0] - crop[0]) / 2.0)
    left = round((resized[1] - crop[1]) / 2.0)
    return resized, (top, left)


def _channel_stats(values: Sequence[float], images: torch.Tensor) -> torch.Tensor:
    stats = torch.as_tensor(values, dtype=images.dtype, device=images.device).flatten()
    if stats.numel() not in (1, images.shape[1]):
        raise SalmapError(f"mean/std need 1 or {images.shape[1]} values, got {stats.numel()}")
    return stats.view(1, -1, 1, 1)


def to_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised images back to pixel space: `x * std + mean`, clamped to [0, 1]."""
    images = check_batch(images)
    return (images * _channel_stats(std, images) + _channel_stats(mean, images)).clamp(0, 1)


def to_normalized(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixel-space images in [0, 1] to the model's space: `(p - mean) / std`."""
    pixels = check_batch(pixels)
    return (pixels - _channel_stats(mean, pixels)) / _channel_stats(std, pixels)
