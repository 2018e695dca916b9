"""Reading images of any kind Pillow opens, and putting maps back on them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from salmap.errors import SalmapError
from salmap.models.transforms import crop_geometry

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image from any Pillow mode: EXIF rotation applied, alpha composited on
    white, 16-bit and float images scaled to 8 bits by their range."""
    image = ImageOps.exif_transpose(image)
    if image.mode in {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}:
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F":
            low, high = float(values.min()), float(values.max())
            values, top = values - low, max(high - low, 1e-12)
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB (see `to_rgb`); a clear error when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise SalmapError(f"no such file: {path}")
    if path.is_dir():
        raise SalmapError(f"{path} is a directory, not an image")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise SalmapError(f"cannot read {path} as an image ({type(error).__name__})") from None


def find_images(paths: list[str | Path]) -> list[Path]:
    """The image files named, and those with an image suffix inside named directories (sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise SalmapError(f"no images in directory {path}")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise SalmapError(f"no such file or directory: {path}")
    return found


def map_to_image(
    saliency: torch.Tensor, image_size: tuple[int, int], resize: int | None, crop: tuple[int, int]
) -> np.ndarray:
    """A `(h, w)` map at the model's input resolution, placed where the centre crop came from
    and resized to the original image's (height, width); pixels the model never saw are 0."""
    resized, (top, left) = crop_geometry(image_size, resize, crop)
    canvas = saliency.new_zeros(resized)
    bottom, right = min(top + crop[0], resized[0]), min(left + crop[1], resized[1])
    canvas[max(top, 0) : bottom, max(left, 0) : right] = saliency[
        max(-top, 0) : bottom - top, max(-left, 0) : right - left
    ]
    full = F.interpolate(canvas[None, None].float(), size=image_size, mode="bilinear", align_corners=False)
    return full[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)


@cache
def _colour_table(colormap: str) -> np.ndarray:
    """The colour map sampled at 256 levels, (256, 3) float32 in [0, 1]."""
    from matplotlib import colormaps

    return colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def overlay(
    image: Image.Image,
    saliency: np.ndarray,
    alpha: float = 0.6,
    colormap: str = "inferno",
    clip_percentile: float = 99.5,
) -> Image.Image:
    """The image with its map (same size) blended on top: each pixel takes
    (1 - a) * image + a * colour(v), with v the map divided by its `clip_percentile` percentile
    (so a few extreme gradient pixels do not hide the rest), clipped to [0, 1], and a = alpha * v,
    in a perceptually uniform colour map (256 levels)."""
    if saliency.shape != (image.height, image.width):
        raise SalmapError(
            f"map of shape {saliency.shape} does not match the image {image.height}x{image.width}"
        )
    top = float(np.percentile(saliency, clip_percentile))
    values = (
        np.clip(saliency / top, 0, 1).astype(np.float32) if top > 0 else np.zeros(saliency.shape, np.float32)
    )
    colours = _colour_table(colormap)[np.rint(values * 255).astype(np.uint8)]
    weight = (alpha * values)[..., None]
    blended = (1 - weight) * (np.asarray(image, dtype=np.float32) / 255.0) + weight * colours
    return Image.fromarray(np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8))
