"""Reading every kind of image Pillow opens, and putting maps back at the image's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salmap import SalmapError, load_image, map_to_image, overlay
from salmap.images import find_images
from salmap.models.transforms import classifier_transform, crop_geometry


def test_modes_become_rgb(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 3), (255, 0, 0, 0))
    rgba.save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").getpixel((0, 0)) == (255, 255, 255)  # transparent on white
    Image.new("L", (4, 3), 100).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").getpixel((1, 1)) == (100, 100, 100)
    Image.new("P", (4, 3), 7).save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").mode == "RGB"
    deep = Image.fromarray(np.full((3, 4), 65535 // 2, dtype=np.uint16))
    deep.save(tmp_path / "d.png")
    assert load_image(tmp_path / "d.png").getpixel((0, 0)) == (127, 127, 127) or load_image(
        tmp_path / "d.png"
    ).getpixel((0, 0)) == (128, 128, 128)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (6, 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (2, 6)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "not.png").write_text("plain text")
    with pytest.raises(SalmapError, match="cannot read"):
        load_image(tmp_path / "not.png")
    with pytest.raises(SalmapError, match="no such file"):
        load_image(tmp_path / "gone.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SalmapError, match="no images in directory"):
        find_images([tmp_path / "empty"])


@pytest.mark.parametrize("size", [(300, 400), (500, 260), (224, 224)])
def test_map_goes_back_where_the_crop_came_from(size: tuple[int, int]) -> None:
    height, width = size
    transform = classifier_transform(256, (224, 224), (0.0,) * 3, (1.0,) * 3, "bilinear")
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    cy, cx = height // 2 + height // 10, width // 2 - width // 10
    pixels[cy - 3 : cy + 3, cx - 3 : cx + 3] = 255
    cropped = transform(Image.fromarray(pixels))[0]
    back = map_to_image(cropped, (height, width), 256, (224, 224))
    assert back.shape == (height, width)
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert abs(peak[0] - cy) <= 4 and abs(peak[1] - cx) <= 4
    resized, (top, left) = crop_geometry((height, width), 256, (224, 224))
    assert min(resized) == 256 and top >= 0 and left >= 0


def test_pixels_outside_the_crop_are_zero() -> None:
    back = map_to_image(torch.ones(224, 224), (256, 512), 256, (224, 224))
    assert back[:, :144].max() == 0 and back[:16].max() == 0 and back[16:240, 144:368].min() == 1


def test_overlay_keeps_the_size_and_colours_salient_pixels() -> None:
    image = Image.new("RGB", (8, 6), (128, 128, 128))
    saliency = np.zeros((6, 8), dtype=np.float32)
    saliency[2, 3] = 1.0
    out = overlay(image, saliency)
    assert out.size == (8, 6)
    assert out.getpixel((0, 0)) == (128, 128, 128) and out.getpixel((3, 2)) != (128, 128, 128)
    with pytest.raises(SalmapError, match="does not match"):
        overlay(image, saliency.T)
