import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from salmap.metrics import average_ranks, covers_all, object_coverage, pixel_auroc


def test_auroc_matches_sklearn_with_ties():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randint(0, 5, (4, 10, 10), generator=generator).float() / 4
    truth = torch.rand(4, 10, 10, generator=generator) > 0.7
    ours = pixel_auroc(maps, truth)
    for m, t, value in zip(maps, truth, ours, strict=True):
        assert value.item() == pytest.approx(roc_auc_score(t.flatten().numpy(), m.flatten().numpy()))


def test_auroc_of_perfect_inverted_and_undefined_maps():
    truth = torch.zeros(1, 6, 6, dtype=torch.bool)
    truth[0, :2] = True
    perfect = truth.float()
    scores = pixel_auroc(
        torch.cat([perfect, 1 - perfect, torch.full_like(perfect, 0.3)]), truth.expand(3, 6, 6)
    )
    assert scores.tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert math.isnan(pixel_auroc(perfect, torch.zeros_like(truth)).item())


def test_average_ranks_share_ties():
    ranks = average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]]))
    assert ranks.tolist() == [[3.5, 1.0, 3.5, 2.0], [2.5, 2.5, 2.5, 2.5]]


def test_coverage_of_two_objects():
    objects = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    objects[0, 0, 0:2, 0:2] = True  # 4 pixels, all covered
    objects[0, 1, 6:8, 4:8] = True  # 8 pixels, half covered
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 0:2, 0:2] = True
    mask[0, 6:8, 4:6] = True
    coverage = object_coverage(mask, objects)
    assert coverage[0].tolist() == [1.0, 0.5]
    assert covers_all(coverage, 0.5).tolist() == [1.0]
    assert covers_all(coverage, 0.6).tolist() == [0.0]
