import math

import pytest
import torch

from salmap.metrics import mask_statistics, summarize_mask_statistics


def test_statistics_on_known_maps():
    constant = torch.full((4, 4), 0.5)
    checker = (torch.arange(4).view(-1, 1) + torch.arange(4).view(1, -1)) % 2
    inverse_e = torch.full((4, 4), 1 / math.e)
    stats = mask_statistics(torch.stack([constant, checker.float(), inverse_e]))
    assert stats.mean.tolist() == pytest.approx([0.5, 0.5, 1 / math.e])
    # sum(-m log2 m) / pixels: 0.5 bits at m = 0.5, 0 for a binary mask, max 1/(e ln 2) at 1/e
    assert stats.entropy.tolist() == pytest.approx([0.5, 0.0, 1 / (math.e * math.log(2))])
    # mean squared horizontal difference + mean squared vertical difference
    assert stats.total_variation.tolist() == pytest.approx([0.0, 2.0, 0.0])


def test_summary_std_across_images():
    maps = torch.stack([torch.zeros(3, 3), torch.ones(3, 3)])
    summary = summarize_mask_statistics(mask_statistics(maps))
    assert summary["mask_mean"] == pytest.approx(0.5)
    assert summary["mask_std"] == pytest.approx(torch.tensor([0.0, 1.0]).std().item())


def test_total_variation_of_a_step():
    step = torch.zeros(1, 2, 3)
    step[0, :, 2] = 1.0  # one horizontal jump per row: 2 of 4 horizontal differences
    assert mask_statistics(step).total_variation.item() == pytest.approx(0.5)
