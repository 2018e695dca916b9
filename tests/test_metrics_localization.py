import pytest
import torch

from salmap.errors import SalmapError
from salmap.metrics import (
    box_accuracy_sweep,
    box_f1,
    box_iou,
    held_out_box_accuracy,
    localization_error,
    max_box_accuracy,
    official_metric_error,
)

GT = torch.tensor([[0, 0, 10, 10]])


def test_iou_known_values():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert box_iou(boxes, GT).view(-1).tolist() == pytest.approx([1.0, 0.5, 50 / 150, 0.0])


def test_le_counts_iou_exactly_half_as_an_error():
    predicted = torch.tensor([[0, 0, 10, 5], [0, 0, 10, 6], [0, 0, 10, 10]])  # IoU 0.5, 0.6, 1
    assert localization_error(predicted, GT.expand(3, 4)).tolist() == [1.0, 0.0, 0.0]


def test_le_with_two_ground_truth_boxes():
    truth = [torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]])] * 2
    predicted = torch.tensor([[21, 20, 30, 30], [40, 40, 50, 50]])
    assert localization_error(predicted, truth).tolist() == [0.0, 1.0]


def test_om_also_needs_the_right_class():
    predicted = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5]])
    errors = official_metric_error(
        predicted, GT.expand(3, 4), torch.tensor([1, 2, 1]), torch.tensor([1, 1, 1])
    )
    assert errors.tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(SalmapError):
        official_metric_error(predicted, GT.expand(3, 4), torch.tensor([1]), torch.tensor([1, 1, 1]))


def box_map(box, size=20, value=1.0):
    saliency = torch.zeros(size, size)
    x0, y0, x1, y1 = box
    saliency[y0:y1, x0:x1] = value
    return saliency


def test_f1_of_perfect_inverted_and_wrong_object_maps():
    truth = [torch.tensor([[2, 2, 8, 8]])] * 3
    perfect = box_map((2, 2, 8, 8))
    maps = torch.stack([perfect, 1 - perfect, box_map((12, 12, 18, 18))])
    scores = box_f1(maps, truth)
    assert scores.f1.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_f1_max_and_mean_over_two_boxes():
    truth = [torch.tensor([[2, 2, 8, 8], [12, 12, 18, 18]])]
    scores = box_f1(box_map((12, 12, 18, 18)).unsqueeze(0), truth)
    assert scores.f1.item() == pytest.approx(1.0)
    assert scores.f1a.item() == pytest.approx(0.5)
    half = box_map((2, 2, 8, 8), value=0.5).unsqueeze(0)  # P = 1, R = 0.5, F1 = 2/3
    assert box_f1(half, truth[0][:1].unsqueeze(0)).f1.item() == pytest.approx(2 / 3)


def test_max_box_accuracy_and_held_out_threshold():
    truth = torch.tensor([[4, 4, 12, 12]])
    saliency = box_map((2, 2, 14, 14), value=0.3) + box_map((4, 4, 12, 12), value=0.5)
    maps = saliency.unsqueeze(0)  # only thresholds in (0.3, 0.8] find the box exactly
    thresholds = torch.tensor([0.1, 0.5, 0.9])
    hits = box_accuracy_sweep(maps, truth, thresholds)
    assert hits.tolist() == [[0.0, 1.0, 0.0]]  # 0.1: IoU 64/144; 0.9: nothing above
    best = max_box_accuracy(hits, thresholds)
    assert (best.accuracy, best.threshold) == (1.0, 0.5)
    chosen, scored = held_out_box_accuracy(
        maps, truth, maps.expand(2, 20, 20), truth.expand(2, 4), thresholds
    )
    assert chosen == 0.5 and scored.tolist() == [1.0, 1.0]
