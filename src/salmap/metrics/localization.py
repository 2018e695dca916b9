"""Box metrics: IoU, localisation error (LE), the official metric (OM), F1/F1a, MaxBoxAcc.

Predicted boxes are `(B, 4)`; ground truth is one `(n_i, 4)` tensor per image (or `(B, 4)` /
`(B, n, 4)`), all `(x0, y0, x1, y1)` with x1, y1 exclusive. Results are per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from salmap.boxes import as_box_list, check_boxes, largest_component_box
from salmap.errors import SalmapError
from salmap.maps import check_maps

GroundTruth = torch.Tensor | Sequence[torch.Tensor]


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union `(N, M)`: |A ∩ B| / |A ∪ B| (0 when both are empty)."""
    a = check_boxes(boxes_a, "boxes_a").double()
    b = check_boxes(boxes_b, "boxes_b").double().to(a.device)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1e-12), 0.0)


def best_iou(predicted: torch.Tensor, ground_truth: GroundTruth) -> torch.Tensor:
    """Per image, the largest IoU of the predicted box with any ground-truth box, `(B,)`."""
    predicted = check_boxes(predicted, "predicted boxes")
    truth = as_box_list(ground_truth, predicted.shape[0], "ground-truth boxes")
    return torch.stack([box_iou(p.view(1, 4), t).max() for p, t in zip(predicted, truth, strict=True)])


def localization_error(
    predicted: torch.Tensor, ground_truth: GroundTruth, iou_threshold: float = 0.5
) -> torch.Tensor:
    """LE (ILSVRC localisation error, as in CAM, Zhou 2016, and CASM, Zolna 2019), `(B,)` of 0/1.

    1 when no ground-truth box has IoU > 0.5 (strictly) with the predicted box. Lower is better.
    """
    return (best_iou(predicted, ground_truth) <= iou_threshold).float()


def official_metric_error(
    predicted: torch.Tensor,
    ground_truth: GroundTruth,
    predicted_classes: torch.Tensor,
    labels: torch.Tensor,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """OM (ILSVRC's official localisation metric, used by CASM, Zolna 2019), `(B,)` of 0/1.

    1 when the LE is 1 or the classifier's top-1 class differs from the label. Lower is better.
    """
    errors = localization_error(predicted, ground_truth, iou_threshold)
    predicted_classes = torch.as_tensor(predicted_classes).flatten().to(errors.device)
    labels = torch.as_tensor(labels).flatten().to(errors.device)
    if predicted_classes.shape != errors.shape or labels.shape != errors.shape:
        raise SalmapError(f"need one predicted class and one label per image ({errors.numel()})")
    return torch.maximum(errors, (predicted_classes != labels).float())


@dataclass
class BoxF1:
    """Per-image F1 of the best ground-truth box (`f1`) and mean F1 over the boxes (`f1a`)."""

    f1: torch.Tensor
    f1a: torch.Tensor


def box_f1(maps: torch.Tensor, ground_truth: GroundTruth) -> BoxF1:
    """F1 / F1a of a continuous map against ground-truth boxes (CASM paper, Zolna 2019).

    For a box: P = sum(m in box) / sum(m), R = sum(m in box) / |box|, F1 = 2PR / (P + R)
    (0 when P + R = 0). `f1` is the max over the image's boxes, `f1a` the mean. Higher is better.
    """
    maps = check_maps(maps)
    batch, height, width = maps.shape
    truth = as_box_list(ground_truth, batch, "ground-truth boxes")
    ys = torch.arange(height, device=maps.device).view(1, -1, 1)
    xs = torch.arange(width, device=maps.device).view(1, 1, -1)
    best, mean = [], []
    for saliency, boxes in zip(maps.double(), truth, strict=True):
        x0, y0, x1, y1 = (boxes[:, i].to(maps.device).view(-1, 1, 1) for i in range(4))
        inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        captured = (saliency.unsqueeze(0) * inside).sum(dim=(1, 2))
        area = inside.sum(dim=(1, 2)).double()
        precision = captured / saliency.sum().clamp_min(1e-12)
        recall = torch.where(area > 0, captured / area.clamp_min(1), 0.0)
        total = precision + recall
        f1 = torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-12), 0.0)
        best.append(f1.max())
        mean.append(f1.mean())
    return BoxF1(f1=torch.stack(best).float(), f1a=torch.stack(mean).float())


def default_thresholds(count: int = 100) -> torch.Tensor:
    """The threshold sweep of Choe et al. 2020: `count` values evenly spaced in [0, 1)."""
    return torch.arange(count, dtype=torch.float64) / count


def box_accuracy_sweep(
    maps: torch.Tensor,
    ground_truth: GroundTruth,
    thresholds: torch.Tensor | None = None,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """Per image and threshold, `(B, T)` of 0/1: box of the largest 8-connected region of
    `m >= tau` has IoU >= delta with some ground-truth box (BoxAcc, Choe et al. 2020,
    "Evaluating Weakly Supervised Object Localization Methods Right"). Higher is better.

    No pixel at or above tau gives an empty box (a miss). The mean over images of column t is
    BoxAcc(tau_t, delta); `max_box_accuracy` takes the best column.
    """
    maps = check_maps(maps)
    thresholds = default_thresholds() if thresholds is None else torch.as_tensor(thresholds)
    truth = as_box_list(ground_truth, maps.shape[0], "ground-truth boxes")
    values = maps.cpu().numpy()
    columns = []
    for tau in thresholds.tolist():
        boxes = [largest_component_box(v >= tau, 8) or (0, 0, 0, 0) for v in values]
        predicted = torch.tensor(boxes, dtype=torch.long, device=maps.device).view(-1, 4)
        columns.append(best_iou(predicted, truth) >= iou_threshold)
    return torch.stack(columns, dim=1).float()


@dataclass
class MaxBoxAccuracy:
    """MaxBoxAcc: the best BoxAcc over the sweep, its threshold, and the whole curve `(T,)`."""

    accuracy: float
    threshold: float
    curve: torch.Tensor


def max_box_accuracy(hits: torch.Tensor, thresholds: torch.Tensor | None = None) -> MaxBoxAccuracy:
    """MaxBoxAcc (Choe et al. 2020) from `box_accuracy_sweep` hits: max over tau of BoxAcc.

    The best threshold is chosen on the data it is scored on, which inflates the score: report
    it as an upper bound, or choose the threshold on held-out data (`held_out_box_accuracy`).
    Choe et al.'s MaxBoxAccV2 is the mean of this over IoU thresholds delta in {0.3, 0.5, 0.7}.
    """
    thresholds = default_thresholds(hits.shape[1]) if thresholds is None else thresholds
    if len(thresholds) != hits.shape[1]:
        raise SalmapError(f"{len(thresholds)} thresholds for {hits.shape[1]} hit columns")
    curve = hits.float().mean(dim=0)
    best = int(curve.argmax())
    return MaxBoxAccuracy(float(curve[best]), float(thresholds[best]), curve)


def held_out_box_accuracy(
    held_out_maps: torch.Tensor,
    held_out_boxes: GroundTruth,
    maps: torch.Tensor,
    ground_truth: GroundTruth,
    thresholds: torch.Tensor | None = None,
    iou_threshold: float = 0.5,
) -> tuple[float, torch.Tensor]:
    """Choose tau by MaxBoxAcc on a held-out split, then score `maps` at that tau (Choe 2020).

    Returns the chosen threshold and the per-image 0/1 hits `(B,)` on the evaluated split.
    """
    thresholds = default_thresholds() if thresholds is None else torch.as_tensor(thresholds)
    hits = box_accuracy_sweep(held_out_maps, held_out_boxes, thresholds, iou_threshold)
    chosen = max_box_accuracy(hits, thresholds).threshold
    scored = box_accuracy_sweep(maps, ground_truth, torch.tensor([chosen]), iou_threshold)
    return chosen, scored[:, 0]


def two_fold_box_accuracy(hits: torch.Tensor) -> float:
    """BoxAcc with the threshold chosen on held-out images (Choe 2020), from `box_accuracy_sweep`
    hits `(B, T)`: each half of the images is scored at the threshold of the MaxBoxAcc of the
    other half; NaN for fewer than two images. Higher is better."""
    if hits.shape[0] < 2:
        return float("nan")
    half = hits.shape[0] // 2
    folds = [(hits[:half], hits[half:]), (hits[half:], hits[:half])]
    scored = [test[:, int(max_box_accuracy(choose).curve.argmax())] for choose, test in folds]
    return float(torch.cat(scored).mean())
