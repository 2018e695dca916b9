import pytest
import torch

from salmap.errors import SalmapError
from salmap.metrics import map_peaks, pointing_accuracy, pointing_hits


def peak_map(x, y, size=64):
    saliency = torch.zeros(size, size)
    saliency[y, x] = 1.0
    return saliency


def torchray_hit(mask: torch.Tensor, point: tuple[int, int], tolerance: int = 15) -> bool:
    """TorchRay's pointing-game test written from its description: the acceptance disc is every
    pixel (v, u) with (v - y)^2 + (u - x)^2 < tolerance^2; a hit when it meets the object."""
    rows = (torch.arange(mask.shape[0], dtype=torch.float32) - point[1]) ** 2
    columns = (torch.arange(mask.shape[1], dtype=torch.float32) - point[0]) ** 2
    return bool((mask & ((rows[:, None] + columns[None, :]) < tolerance**2)).any())


def test_hits_within_15_px_of_the_box():
    box = [torch.tensor([[20, 20, 30, 30]])] * 6
    maps = torch.stack(
        [
            peak_map(25, 25),  # inside
            peak_map(43, 25),  # 14 px right of the last column (29)
            peak_map(44, 25),  # exactly 15 px: outside the open disc
            peak_map(45, 25),  # 16 px
            peak_map(39, 39),  # 10 px right and 10 down: 14.1 px
            peak_map(41, 41),  # 12, 12: 17 px
        ]
    )
    assert map_peaks(maps)[0].tolist() == [25, 25]
    assert pointing_hits(maps, boxes=box).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]


def test_pointing_matches_torchray_on_random_peaks_and_boxes():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        x0, y0 = torch.randint(0, 40, (2,), generator=generator).tolist()
        w, h = torch.randint(1, 20, (2,), generator=generator).tolist()
        x, y = torch.randint(0, 64, (2,), generator=generator).tolist()
        mask = torch.zeros(64, 64, dtype=torch.bool)
        mask[y0 : y0 + h, x0 : x0 + w] = True
        boxes = [torch.tensor([[x0, y0, min(x0 + w, 64), min(y0 + h, 64)]])]
        want = float(torchray_hit(mask, (x, y)))
        assert pointing_hits(peak_map(x, y)[None], boxes=boxes).item() == want
        assert pointing_hits(peak_map(x, y)[None], object_masks=mask[None]).item() == want


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
