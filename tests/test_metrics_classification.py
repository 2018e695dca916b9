import math

import pytest
import torch
from torch import nn

from salmap.metrics import classify, masked_classification, random_masks_like


class FirstPixels(nn.Module):
    """Logits = 10 x the first six pixel values of each (normalised) image."""

    def forward(self, x):
        return 10 * x.flatten(1)[:, :6]


def test_top1_top5_and_entropy():
    images = torch.zeros(2, 1, 4, 4)
    images[0, 0, 0, 3] = 1.0  # class 3 wins
    result = classify(FirstPixels().eval(), images, torch.tensor([3, 5]))
    assert result.top1.tolist() == [1.0, 0.0]
    assert result.top5.tolist() == [1.0, 1.0]  # uniform logits: class 5 is in the top 5
    assert result.entropy[1].item() == pytest.approx(math.log(6))


def test_reference_masks_and_keys():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 8, 8, generator=generator)
    masks = torch.rand(3, 8, 8, generator=generator) > 0.6
    labels = torch.tensor([0, 1, 2])
    models = {"a": FirstPixels().eval(), "b": nn.Sequential(FirstPixels()).eval()}
    results = masked_classification(models, images, masks, labels, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert len(results) == 2 * 3 * 4
    clean = classify(models["a"], images, labels)
    for key in [("a", "masked_in", "ones"), ("a", "masked_out", "zeros"), ("a", "inpainted", "zeros")]:
        assert torch.equal(results[key].top1, clean.top1), key
    blank = results[("a", "masked_out", "ones")]
    assert blank.entropy.tolist() == pytest.approx([math.log(6)] * 3)


def test_random_masks_keep_the_area():
    masks = torch.rand(4, 10, 10, generator=torch.Generator().manual_seed(1)) > 0.3
    shuffled = random_masks_like(masks, torch.Generator().manual_seed(2))
    assert torch.equal(shuffled.sum(dim=(1, 2)), masks.sum(dim=(1, 2)))
    assert not torch.equal(shuffled, masks)
