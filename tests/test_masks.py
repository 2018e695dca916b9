import pytest
import torch

from salmap.errors import SalmapError
from salmap.figures import mask_figure
from salmap.masks import (
    discretize,
    discretize_to_area,
    inpaint_masked_out,
    masked_in,
    masked_out,
)
from salmap.models.transforms import to_normalized, to_pixels


def test_discretize_mean_rule_on_known_array():
    maps = torch.tensor([[[0.0, 0.2], [0.4, 0.8]]])  # mean 0.35
    assert discretize(maps).tolist() == [[[False, False], [True, True]]]
    assert discretize(maps, alpha=2.0).tolist() == [[[False, False], [False, True]]]
    assert discretize(torch.full((1, 2, 2), 0.3)).all()  # m >= mean holds with equality


def test_discretize_to_area_matches_the_mean():
    maps = torch.arange(16, dtype=torch.float32).view(1, 4, 4) / 15 * 0.5  # mean 0.25
    masks = discretize_to_area(maps)
    assert int(masks.sum()) == 4
    assert masks.view(-1)[-4:].all()
    flat = torch.full((1, 4, 4), 0.5)  # ties: exactly half the pixels, first in row-major order
    assert int(discretize_to_area(flat).sum()) == 8
    assert discretize_to_area(flat).view(-1)[:8].all()
    assert not discretize_to_area(torch.zeros(1, 3, 3)).any()


@pytest.mark.parametrize(
    "maps", [torch.rand(4, 4), torch.rand(1, 4, 4) * 2, torch.ones(1, 4, 4, dtype=torch.long)]
)
def test_bad_maps_raise(maps):
    with pytest.raises(SalmapError):
        discretize(maps)


def test_masked_in_and_out_split_the_image():
    x = torch.randn(2, 3, 5, 5)
    b = torch.rand(2, 5, 5) > 0.5
    assert torch.equal(masked_in(x, b) + masked_out(x, b), x)
    assert (masked_in(x, b)[:, :, ~b[0]][0] == 0).all()
    with pytest.raises(SalmapError):
        masked_in(x, b[:, :4])


def test_pixel_space_round_trip():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = torch.rand(2, 3, 4, 4)
    assert torch.allclose(to_pixels(to_normalized(pixels, mean, std), mean, std), pixels, atol=1e-6)


def test_inpainting_fills_the_hole_from_its_surroundings():
    image = torch.zeros(1, 3, 20, 20, dtype=torch.uint8)
    image[:, 0], image[:, 1], image[:, 2] = 200, 100, 50
    holed = image.clone()
    holed[:, :, 8:12, 8:12] = 0
    hole = torch.zeros(1, 20, 20, dtype=torch.bool)
    hole[:, 8:12, 8:12] = True
    filled = inpaint_masked_out(holed, hole, radius=3)
    assert filled.dtype == torch.uint8
    assert (filled.int() - image.int()).abs().max() <= 2
    as_float = inpaint_masked_out(holed.float() / 255, hole)
    assert as_float.dtype == torch.float32
    assert torch.equal(as_float[:, :, ~hole[0]], holed.float()[:, :, ~hole[0]] / 255)
    with pytest.raises(SalmapError):
        inpaint_masked_out(holed.float(), hole)  # floats must be pixels in [0, 1]


def test_mask_figure_is_written(tmp_path):
    images = torch.rand(3, 3, 16, 16)
    maps = torch.rand(3, 16, 16)
    assert mask_figure(images, maps, tmp_path / "fig.png").stat().st_size > 0
    path = mask_figure(images, maps, tmp_path / "n.png", mean=(0.5,) * 3, std=(0.5,) * 3)
    assert path.exists()


def test_fill_value_replaces_removed_pixels() -> None:
    import torch

    from salmap.masks import masked_in, masked_out

    x = torch.arange(8.0).view(1, 2, 2, 2)
    b = torch.tensor([[[True, False], [False, True]]])
    out = masked_out(x, b, fill=-1.0)
    assert out[0, :, 0, 0].tolist() == [-1.0, -1.0] and out[0, :, 0, 1].tolist() == [1.0, 5.0]
    kept = masked_in(x, b, fill=-1.0)
    assert kept[0, :, 0, 0].tolist() == [0.0, 4.0] and kept[0, :, 0, 1].tolist() == [-1.0, -1.0]
    torch.testing.assert_close(masked_out(x, b) + masked_in(x, b), x)


def test_inpainting_a_fully_masked_image_gives_black() -> None:
    import torch

    from salmap.masks import inpaint_masked_out

    images = torch.full((2, 3, 8, 8), 0.7)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0] = True
    masks[1, 2:4, 2:4] = True
    filled = inpaint_masked_out(images, masks)
    assert float(filled[0].abs().max()) == 0.0
    assert torch.allclose(filled[1], images[1], atol=2 / 255)
