"""Image preprocessing for classifiers: resize the shorter side, centre crop, normalise."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision.transforms.v2 as T
from PIL import Image

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
