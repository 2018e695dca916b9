import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from salmap.data.digits import (
    CLEARANCE,
    DIGITS_MEAN,
    DIGITS_STD,
    SPLITS,
    ClutteredDigits,
    build_split,
    source_indices,
)
from salmap.errors import SalmapError


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images * DIGITS_STD[0] + DIGITS_MEAN[0]


def test_source_splits_are_disjoint_and_cover_every_class():
    parts = [set(source_indices(split).tolist()) for split in SPLITS]
    assert sum(len(p) for p in parts) == 1797
    assert len(set.union(*parts)) == 1797
    for split, part in zip(SPLITS, parts, strict=True):
        data = build_split(split, 300, seed=3)
        assert set(data.sources.tolist()) <= part
        assert set(data.labels.tolist()) == set(range(10))


def test_same_seed_same_data_other_seed_other_data():
    a = build_split("val", 50, variant="twin", seed=7)
    b = build_split("val", 50, variant="twin", seed=7)
    c = build_split("val", 50, variant="twin", seed=8)
    for name in ("images", "labels", "boxes", "masks", "sources"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("variant", ["single", "twin"])
def test_masks_are_the_evidence_pixels_and_lie_inside_tight_boxes(variant):
    data = build_split("test", 200, variant=variant, seed=1)
    copies = 1 if variant == "single" else 2
    assert data.images.shape == (200, 1, 64, 64)
    assert data.masks.shape == (200, copies, 64, 64)
    assert data.boxes.shape == (200, copies, 4)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    for mask, box in zip(data.masks.flatten(0, 1), data.boxes.flatten(0, 1), strict=True):
        x0, y0, x1, y1 = box.tolist()
        inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        assert mask.any() and not (mask & ~inside).any()
        # tight: every box edge touches the mask
        assert mask[:, x0].any() and mask[:, x1 - 1].any()
        assert mask[y0].any() and mask[y1 - 1].any()
    # Evidence pixels are inked; clutter stays CLEARANCE pixels clear of every stroke.
    image = pixels(data.images[:, 0])
    evidence = data.masks.any(1)
    assert (image[evidence] > 0.1).all()
    near = torch.nn.functional.max_pool2d(
        evidence.float()[:, None], 2 * CLEARANCE + 1, stride=1, padding=CLEARANCE
    )[:, 0].bool()
    assert (image[near & ~evidence] == 0).all()
    assert (image[~near] > 0).any(), "there is clutter"


def test_twin_copies_are_the_same_digit_far_apart_and_disjoint():
    data = build_split("train", 300, variant="twin", seed=2)
    first, second = data.masks[:, 0], data.masks[:, 1]
    assert not (first & second).any()
    boxes = data.boxes.float()
    a, b = boxes[:, 0], boxes[:, 1]
    overlap_x = torch.minimum(a[:, 2], b[:, 2]) > torch.maximum(a[:, 0], b[:, 0])
    overlap_y = torch.minimum(a[:, 3], b[:, 3]) > torch.maximum(a[:, 1], b[:, 1])
    assert not (overlap_x & overlap_y).any()
    # Same source digit: the two masks are translates of each other.
    for i in range(20):
        (y0, x0), (y1, x1) = [np.argwhere(m.numpy()).min(0) for m in (first[i], second[i])]
        assert torch.equal(torch.roll(first[i], (int(y1 - y0), int(x1 - x0)), (0, 1)), second[i])
    # Tight-box centres: placement centres are >= 32 px apart, tight boxes of the same digit
    # shift with them.
    centre = lambda box: (box[:, :2] + box[:, 2:]) / 2  # noqa: E731
    assert (torch.linalg.norm(centre(a) - centre(b), dim=1) >= 32 - 1e-6).all()


def test_class_subset_restricts_the_evidence_digits():
    seen = build_split("test", 200, seed=0, classes=range(5))
    assert set(seen.labels.tolist()) == {0, 1, 2, 3, 4}
    unseen = build_split("test", 200, seed=0, classes=[5, 6, 7, 8, 9])
    assert set(unseen.labels.tolist()) == {5, 6, 7, 8, 9}


def test_dataset_items_collate_and_options():
    dataset = ClutteredDigits("val", 10, variant="twin", seed=0, canvas_size=80, digit_size=20)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 1, 80, 80)
    assert batch["masks"].shape == (4, 2, 80, 80)
    assert batch["boxes"].shape == (4, 2, 4)
    assert (batch["boxes"][..., 2:] - batch["boxes"][..., :2] <= 20).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variant": "triple"},
        {"split": "holdout"},
        {"variant": "twin", "canvas_size": 40},
        {"classes": [10]},
        {"digit_size": 70},
    ],
)
def test_bad_options_raise_salmap_error(kwargs):
    options = {"split": "test", "n": 5} | kwargs
    with pytest.raises(SalmapError):
        build_split(options.pop("split"), options.pop("n"), **options)
