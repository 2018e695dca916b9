import pytest
import torch

from salmap.errors import SalmapError
from salmap.metrics import map_peaks, pointing_accuracy, pointing_hits


def peak_map(x, y, size=64):
    saliency = torch.zeros(size, size)
    saliency[y, x] = 1.0
    return saliency


def test_hits_within_15_px_of_the_box():
    box = [torch.tensor([[20, 20, 30, 30]])] * 5
    maps = torch.stack(
        [
            peak_map(25, 25),  # inside
            peak_map(44, 25),  # 15 px right of the last column (29)
            peak_map(45, 25),  # 16 px
            peak_map(39, 39),  # 10 px right and 10 down: 14.1 px
            peak_map(41, 41),  # 12, 12: 17 px
        ]
    )
    assert map_peaks(maps)[0].tolist() == [25, 25]
    assert pointing_hits(maps, boxes=box).tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_hits_against_a_pixel_mask_and_two_objects():
    masks = torch.zeros(2, 2, 64, 64, dtype=torch.bool)
    masks[:, 0, 10, 10] = True
    masks[:, 1, 50, 50] = True
    maps = torch.stack([peak_map(50, 40), peak_map(30, 30)])  # 10 px from the 2nd; ~28 px
    assert pointing_hits(maps, object_masks=masks).tolist() == [1.0, 0.0]
    with pytest.raises(SalmapError):
        pointing_hits(maps)


def test_accuracy_is_averaged_over_classes():
    hits = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    labels = torch.tensor([0, 0, 0, 0, 1])
    assert pointing_accuracy(hits, labels) == pytest.approx((0.75 + 0.0) / 2)
