"""Reading images of any kind Pillow opens, and putting maps back on them."""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

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


def pixel_limit() -> int | None:
    """The largest image, in pixels, that is read without being asked for: Pillow's
    `Image.MAX_IMAGE_PIXELS` (about 89 million by default; None: no limit), its guard against
    decompression bombs."""
    return Image.MAX_IMAGE_PIXELS


def _too_large(path: Path, pixels: int | None, limit: int) -> SalmapError:
    size = f"{pixels:,} pixels" if pixels is not None else "more pixels than twice the limit"
    return SalmapError(
        f"{path} has {size}, over the limit of {limit:,} (Pillow's guard against decompression "
        f"bombs); to read it, pass --max-pixels {pixels or 2 * limit + 1} (max_pixels= in Python)"
    )


def load_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open an image file as 8-bit RGB (see `to_rgb`); a clear error when it cannot be read.

    Images of more than `max_pixels` pixels (default: `pixel_limit()`) are refused, except JPEGs,
    which are decoded at 1/2, 1/4 or 1/8 of each side (Pillow's `draft`: the decoder never holds
    the whole image) when that brings them under the limit; the image returned then has the
    reduced size (a model sees a few hundred pixels of it anyway). A `max_pixels` above Pillow's
    limit raises Pillow's limit to it."""
    path = Path(path)
    if not path.exists():
        raise SalmapError(f"no such file: {path}")
    if path.is_dir():
        raise SalmapError(f"{path} is a directory, not an image")
    limit = pixel_limit() if max_pixels is None else max_pixels
    if limit is not None and pixel_limit() is not None and limit > pixel_limit():
        Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path) as image:
                pixels = image.width * image.height
                if limit is not None and pixels > limit:
                    _reduce_jpeg(image, limit, path)
                image.load()
                return to_rgb(image)
    except SalmapError:
        raise
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, int(found.group(1)) if found else None, limit) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise SalmapError(f"cannot read {path} as an image ({type(error).__name__})") from None


def _reduce_jpeg(image: Image.Image, limit: int, path: Path) -> None:
    """Set a JPEG to decode at the least reduction (1/2, 1/4 or 1/8 of each side) that brings it
    under `limit` pixels (Pillow's `draft`); any other image over the limit is refused."""
    pixels = image.width * image.height
    for scale in (2, 4, 8):
        if image.format == "JPEG" and (image.width // scale) * (image.height // scale) <= limit:
            image.draft("RGB", (image.width // scale, image.height // scale))
            return
    raise _too_large(path, pixels, limit)


def _open(path: Path) -> Image.Image:
    """The image file opened (header only). A JPEG is opened by its own plugin, which leaves the
    size check to `load_image` so that a huge one can still be decoded at a reduced size."""
    with open(path, "rb") as handle:
        signature = handle.read(3)
    if signature == b"\xff\xd8\xff":
        return JpegImagePlugin.JpegImageFile(path)
    return Image.open(path)


def output_name(stem: str) -> str:
    """A file or folder name made from an image's stem that stays where it is put: path
    separators, control characters and characters that Windows refuses become `_`, and so do
    leading dots (`..`, `.` and hidden names); an empty name becomes `image`."""
    cleaned = "".join(
        "_" if char in '/\\:*?"<>|' or unicodedata.category(char).startswith("C") else char
        for char in unicodedata.normalize("NFC", stem)
    ).strip()
    dots = len(cleaned) - len(cleaned.lstrip("."))
    cleaned = "_" * dots + cleaned[dots:]
    return cleaned.rstrip(". ") or "image"


def scan_images(paths: list[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files named, and those with an image suffix inside named directories (sorted),
    with the folders inside them that could not be read and why. A named file or directory that
    does not exist, or a named directory without images, is an error."""
    found: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():

            def refused(error: OSError, top: Path = path) -> None:
                unreadable.append((Path(error.filename or top), f"cannot read the folder ({error.strerror})"))

            inside = sorted(
                Path(folder) / name
                for folder, _, names in os.walk(path, onerror=refused)
                for name in names
                if Path(name).suffix.lower() in IMAGE_SUFFIXES and (Path(folder) / name).is_file()
            )
            if not inside and not unreadable:
                raise SalmapError(f"no images in directory {path}")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise SalmapError(f"no such file or directory: {path}")
    return found, unreadable


def find_images(paths: list[str | Path]) -> list[Path]:
    """The image files named, and those with an image suffix inside named directories (sorted);
    an error when a folder inside them cannot be read (see `scan_images`)."""
    found, unreadable = scan_images(paths)
    if unreadable:
        folder, reason = unreadable[0]
        raise SalmapError(f"{folder}: {reason}")
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
