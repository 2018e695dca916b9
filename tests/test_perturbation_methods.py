"""Occlusion and RISE against answers known in closed form or by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyGapNet
from skimage.transform import resize
from torch import nn

from salmap import RISE, Occlusion, SalmapError
from salmap.explainers.occlusion import window_starts
from salmap.explainers.rise import RiseMasks
from salmap.metrics import deletion

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_model(height: int = 12, width: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * height * width, 4)).eval()


def test_occlusion_of_a_linear_model_is_the_windows_mean_contribution() -> None:
    model = linear_model()
    x = torch.randn(2, 3, 12, 10)
    targets = torch.tensor([1, 2])
    contribution = (model[1].weight.view(4, 3, 12, 10)[targets] * x).sum(dim=1)
    # one-pixel windows: the drop of the logit is the pixel's own contribution w . x
    single = Occlusion(model, window=1, stride=1, score="logit")(x, targets, normalize=False)
    torch.testing.assert_close(single, contribution, rtol=1e-4, atol=1e-5)
    # 4 px windows every 3 px (and flush with the far edges): the mean over the covering windows
    # of the summed contribution inside each window
    window = 4
    maps = Occlusion(model, window=window, stride=3, score="logit")(x, targets, normalize=False)
    rows, columns = window_starts(12, window, 3), window_starts(10, window, 3)
    total = torch.zeros(2, 12, 10)
    count = torch.zeros(12, 10)
    for top in rows:
        for left in columns:
            inside = (slice(None), slice(top, top + window), slice(left, left + window))
            total[inside] += contribution[inside].sum(dim=(1, 2), keepdim=True)
            count[inside[1:]] += 1
    torch.testing.assert_close(maps, total / count, rtol=1e-4, atol=1e-5)


def test_occlusion_windows_cover_every_pixel() -> None:
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(12, 4, 3) == [0, 3, 6, 8]
    assert window_starts(5, 5, 2) == [0]
    with pytest.raises(SalmapError, match="larger than the image"):
        window_starts(4, 5, 1)


def test_occlusion_probability_and_baseline(tiny_net: TinyGapNet, images) -> None:
    explainer = Occlusion(tiny_net, window=4, stride=4, baseline=0.5)
    maps = explainer(images, target=1, normalize=False)
    probabilities = tiny_net(images).softmax(dim=1)[:, 1]
    occluded = images.clone()
    occluded[:, :, 4:8, 8:12] = 0.5
    drop = probabilities - tiny_net(occluded).softmax(dim=1)[:, 1]
    torch.testing.assert_close(maps[:, 5, 9], drop, rtol=1e-4, atol=1e-6)
    assert explainer.settings() == {"window": 4, "stride": 4, "baseline": 0.5, "score": "probability"}
    with pytest.raises(SalmapError, match="unknown score"):
        Occlusion(tiny_net, score="softmax")


def test_occlusion_default_window_follows_the_input_size(tiny_net: TinyGapNet) -> None:
    window, stride, rows, columns = Occlusion(tiny_net).geometry(224, 224)
    assert (window, stride, len(rows), len(columns)) == (32, 16, 13, 13)
    assert Occlusion(tiny_net).geometry(64, 64)[:2] == (9, 4)


def test_rise_masks_follow_the_authors_upsampling() -> None:
    like = torch.zeros(1)
    masks = RiseMasks(n=6, cells=5, p=0.5, seed=3, size=(23, 19), like=like)
    cell = masks.cell
    assert cell == (5, 4)
    made = masks(0, 6)
    assert made.shape == (6, 23, 19)
    for i in range(6):
        grid = masks.grids[i].numpy()
        up = resize(grid, (6 * cell[0], 6 * cell[1]), order=1, mode="reflect", anti_aliasing=False)
        top, left = masks.shifts[i].tolist()
        assert 0 <= top < cell[0] and 0 <= left < cell[1]
        np.testing.assert_allclose(made[i].numpy(), up[top : top + 23, left : left + 19], atol=1e-6)
    # chunks give the same masks as one call
    torch.testing.assert_close(torch.cat([masks(0, 2), masks(2, 5), masks(5, 6)]), made)


def test_rise_masks_keep_a_fraction_p_and_depend_on_the_seed() -> None:
    like = torch.zeros(1)
    masks = RiseMasks(n=2000, cells=7, p=0.3, seed=0, size=(28, 28), like=like)
    assert float(masks(0, 2000).mean()) == pytest.approx(0.3, abs=0.01)
    other = RiseMasks(n=5, cells=7, p=0.3, seed=1, size=(28, 28), like=like)
    assert not torch.equal(other(0, 5), masks(0, 5))


def evidence_model() -> nn.Module:
    """Two classes on 1 x 16 x 16 images: class 0's logit is 6 times the mean of a 6x6 square
    (rows and columns 2-7), class 1's is 2. The evidence for class 0 is exactly that square."""
    linear = nn.Linear(256, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([0.0, 2.0]))
        square = torch.zeros(16, 16)
        square[2:8, 2:8] = 6.0 / 36
        linear.weight[0] = square.flatten()
    return nn.Sequential(nn.Flatten(), linear).eval()


def test_rise_finds_the_known_evidence_and_beats_a_random_map_on_deletion() -> None:
    model = evidence_model()
    image = torch.ones(2, 1, 16, 16)
    explainer = RISE(model, n=500, cells=4, batch_size=64)
    maps = explainer(image, target=0, normalize=False)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:8, 2:8] = True
    # E[p | pixel kept]: higher where keeping the pixel keeps the evidence
    assert float(maps[:, inside].mean()) > 1.1 * float(maps[:, ~inside].mean())
    random = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
    normalised = explainer(image, target=0)
    ours = deletion(model, image, normalised, target=0, steps=16).auc
    chance = deletion(model, image, random, target=0, steps=16).auc
    assert bool((ours < chance).all())


def test_rise_memory_is_bounded_by_the_pass_not_by_n(tiny_net: TinyGapNet, images) -> None:
    for n in (10, 100):
        seen: list[int] = []
        handle = tiny_net.register_forward_hook(lambda _m, args, _o, seen=seen: seen.append(args[0].shape[0]))
        try:
            RISE(tiny_net, n=n, batch_size=8)(images, target=0)
        finally:
            handle.remove()
        assert max(seen) <= 8 and sum(seen) == n * len(images)


def test_rise_masks_towards_its_baseline() -> None:
    model = linear_model(8, 8)
    x = torch.randn(1, 3, 8, 8)
    masks = RiseMasks(n=3, cells=2, p=0.5, seed=0, size=(8, 8), like=x)(0, 3)
    explainer = RISE(model, n=3, cells=2, baseline=-1.5)
    expected = masks[:, None, None] * x + (1 - masks[:, None, None]) * -1.5
    torch.testing.assert_close(explainer.masked(masks, x), expected)
    torch.testing.assert_close(RISE(model, n=3, cells=2).masked(masks, x), masks[:, None, None] * x)


def test_rise_is_seeded_and_checks_its_settings(tiny_net: TinyGapNet, images) -> None:
    first = RISE(tiny_net, n=30, seed=5)(images, normalize=False)
    torch.testing.assert_close(RISE(tiny_net, n=30, seed=5)(images, normalize=False), first)
    assert not torch.allclose(RISE(tiny_net, n=30, seed=6)(images, normalize=False), first)
    by_function = RISE(tiny_net, n=30, score="logit")(images, target=lambda out: out[:, 1], normalize=False)
    torch.testing.assert_close(by_function, RISE(tiny_net, n=30, score="logit")(images, 1, normalize=False))
    with pytest.raises(SalmapError, match="keep probability"):
        RISE(tiny_net, p=0.0)
    with pytest.raises(SalmapError, match="n >= 1"):
        RISE(tiny_net, n=0)
