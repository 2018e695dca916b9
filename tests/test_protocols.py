"""The paper protocols: the CASM authors' box geometry, IoU and F1 with areas before clipping,
black masked pixels, OM with a mapper's own classifier, raw masks, and `evaluate --protocol`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from salmap.casm import CASM
from salmap.cli import main
from salmap.data.digits import build_split
from salmap.data.imagenet import casm_boxes
from salmap.evaluation import protocol
from salmap.masks import black, masked_in, masked_out
from salmap.metrics import box_f1, localization_error
from salmap.models.transforms import to_normalized, to_pixels


def authors_box(raw: list[int], width: int, height: int) -> tuple[list[int], int]:
    """The box of the authors' score.py written from its description: scale by 224 / shorter
    side, shift by half of what the crop removes from the longer side, truncate each coordinate
    with int(); the area before clipping, the coordinates clipped to [0, 224]."""
    if width > height:
        ratio, xcut, ycut = 224 / height, (width * 224 / height - 224) / 2, 0.0
    else:
        ratio, xcut, ycut = 224 / width, 0.0, (height * 224 / width - 224) / 2
    x0, y0, x1, y1 = (
        int(v)
        for v in (ratio * raw[0] - xcut, ratio * raw[1] - ycut, ratio * raw[2] - xcut, ratio * raw[3] - ycut)
    )
    area = (x1 - x0) * (y1 - y0)
    return [min(max(v, 0), 224) for v in (x0, y0, x1, y1)], area


def test_casm_box_geometry_matches_the_authors_score_script():
    rng = np.random.default_rng(0)
    for _ in range(300):
        width, height = (int(v) for v in rng.integers(60, 900, 2))
        x0, x1 = sorted(int(v) for v in rng.integers(1, width + 1, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(1, height + 1, 2))
        boxes, areas = casm_boxes(np.array([[x0, y0, x1, y1]]), (width, height), 224, 224)
        expected, area = authors_box([x0, y0, x1, y1], width, height)
        assert boxes[0].tolist() == expected and areas[0] == area


def authors_scores(
    box: list[int], area: int, continuous: np.ndarray, rectangle: np.ndarray
) -> tuple[float, int]:
    """F1 and the IoU > 0.5 hit of the authors' get_loc_scores (their 1e-6 guards included)."""
    x0, y0, x1, y1 = box
    if x0 == x1 or y0 == y1:
        return 0.0, 0
    truth = np.zeros_like(continuous)
    truth[y0:y1, x0:x1] = 1
    inside = (continuous * truth).sum()
    precision, recall = inside / (continuous.sum() + 1e-6), inside / area
    f1 = 2 * precision * recall / (precision + recall + 1e-6)
    overlap = (rectangle * truth).sum()
    return f1, int(overlap / (rectangle.sum() + area - overlap) > 0.5)


def test_iou_and_f1_divide_by_the_area_before_clipping_as_the_authors():
    rng = np.random.default_rng(1)
    for _ in range(100):
        continuous = rng.random((224, 224)) ** 4
        px0, py0 = (int(v) for v in rng.integers(0, 150, 2))
        predicted = [px0, py0, px0 + int(rng.integers(20, 74)), py0 + int(rng.integers(20, 74))]
        rectangle = np.zeros((224, 224))
        rectangle[predicted[1] : predicted[3], predicted[0] : predicted[2]] = 1
        raw = [int(v) for v in rng.integers(-60, 200, 2)]
        unclipped = [*raw, raw[0] + int(rng.integers(10, 120)), raw[1] + int(rng.integers(10, 120))]
        area = (unclipped[2] - unclipped[0]) * (unclipped[3] - unclipped[1])
        clipped = [min(max(v, 0), 224) for v in unclipped]
        f1, hit = authors_scores(clipped, area, continuous, rectangle)
        truth, areas = [torch.tensor([clipped])], [torch.tensor([float(area)])]
        maps = torch.from_numpy(continuous).float()[None]
        error = localization_error(torch.tensor([predicted]), truth, truth_areas=areas)
        assert error.item() == 1 - hit
        assert box_f1(maps, truth, truth_areas=areas).f1.item() == pytest.approx(f1, abs=1e-4)


def test_black_fill_equals_blacking_out_pixels_before_normalisation():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = torch.rand(2, 3, 6, 6)
    images = to_normalized(pixels, mean, std)
    masks = torch.rand(2, 6, 6) > 0.5
    weights = masks.unsqueeze(1).float()
    expected_out = to_normalized(pixels * (1 - weights), mean, std)
    expected_in = to_normalized(pixels * weights, mean, std)
    torch.testing.assert_close(masked_out(images, masks, black(mean, std)), expected_out)
    torch.testing.assert_close(masked_in(images, masks, black(mean, std)), expected_in)
    torch.testing.assert_close(
        to_pixels(masked_out(images, masks, black(mean, std)), mean, std), pixels * (1 - weights)
    )


def test_casm_protocol_on_the_digits_scores_raw_masks_and_own_classifier_om(tmp_path: Path, capsys) -> None:
    out = tmp_path / "casm"
    methods = ["--method", "casm,baseline,gradcam", "--protocol", "casm"]
    code = main(
        ["evaluate", "--data", "digits", "--limit", "12", "--batch-size", "6", *methods, "--out", str(out)]
    )
    assert code == 0
    report = (out / "report.md").read_text()
    assert "Protocol `casm`" in report and "CASM paper, Table 1" in report
    document = json.loads((out / "metrics.json").read_text())
    assert document["protocol"] == "casm" and document["causal_target"] is None
    rows = document["methods"]
    assert set(rows["casm"]) >= {"om_casm_own", "le_casm", "f1", "f1a", "mask_mean", "mask_std", "masked_out"}
    assert "le_cam" not in rows["casm"] and "pointing" not in rows["casm"]
    assert not (out / "sanity.png").exists() and not (out / "curves.png").exists()
    data = build_split("test", 12, seed=0)
    mapper = CASM.from_checkpoint(CASM.shipped_checkpoint())
    raw, logits, _ = mapper.with_prediction(data.images, normalize=False)
    assert rows["casm"]["mask_mean"] == pytest.approx(float(raw.mean()), abs=1e-6)  # raw, not min-max
    from salmap.boxes import casm_rule_boxes
    from salmap.metrics import official_metric_error

    own = official_metric_error(casm_rule_boxes(raw), data.boxes, logits.argmax(1), data.labels)
    assert rows["casm"]["om_casm_own"] == pytest.approx(float(own.mean()), abs=1e-6)


def test_causal_target_is_an_option_stated_in_the_report(tmp_path: Path) -> None:
    for target in ("label", "prediction"):
        out = tmp_path / target
        arguments = [
            "evaluate",
            "--data",
            "digits",
            "--limit",
            "4",
            "--method",
            "gradient",
            "--sanity-images",
            "0",
        ]
        assert main([*arguments, "--causal-target", target, "--out", str(out)]) == 0
        document = json.loads((out / "metrics.json").read_text())
        assert document["protocol"] == "salmap" and document["causal_target"] == target
        stated = (
            "top-1 class on the clean image (RISE)" if target == "prediction" else "the ground-truth class"
        )
        assert stated in (out / "report.md").read_text()
    with pytest.raises(Exception, match="causal target"):
        protocol("salmap").with_causal_target("both")
