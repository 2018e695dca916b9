"""`salmap evaluate` end to end on the cluttered digits, its data sources and its bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import salmap
from salmap.cli import main
from salmap.evaluation import parse_source
from salmap.metrics import two_fold_box_accuracy


def test_evaluate_digits_twin_end_to_end(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "evaluate",
            "--data",
            "digits:twin",
            "--limit",
            "4",
            "--batch-size",
            "4",
            "--samples",
            "2",
            "--scales",
            "2",
            "--rise-n",
            "16",
            "--integrated-gradients-steps",
            "4",
            "--occlusion-window",
            "16",
            "--sanity-images",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| gradcam |" in printed and "covers every object" in printed
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["images"] == 4 and document["model"] == "digits_cnn"
    assert set(document["methods"]) == set(salmap.method_names())
    for row in document["methods"].values():
        for key in (
            "le_cam",
            "le_casm",
            "le_graphcut",
            "f1",
            "pointing",
            "max_box_acc",
            "auroc",
            "covers_all",
        ):
            assert 0.0 <= row[key] <= 1.0, key
        assert 0.0 <= row["deletion"] <= 1.0 and 0.0 <= row["insertion"] <= 1.0
        assert row["box_acc_held_out"] <= row["max_box_acc"] + 1e-9
    with open(tmp_path / "metrics.csv") as handle:
        assert len(list(csv.reader(handle))) == 1 + len(document["methods"])
    for name in ("report.md", "gallery.png", "curves.png", "sanity.png"):
        assert (tmp_path / name).stat().st_size > 0
    code = main(["evaluate", "--data", "digits", "--limit", "2", "--out", str(tmp_path)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("mnist", "unknown data"),
        ("digits:triple", "unknown digits variant"),
        ("imagenet:", "imagenet:PATH"),
        ("imagenet:/no/such/folder", "no val folder"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(data: str, fragment: str, tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--data", data, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_held_out_threshold_is_chosen_on_the_other_half() -> None:
    # first half: threshold 0 always hits; second half: threshold 1 always hits
    hits = torch.tensor([[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2)
    assert two_fold_box_accuracy(hits) == 0.0  # each half is scored at the other half's best
    assert two_fold_box_accuracy(torch.tensor([[1.0, 0.0]] * 4)) == 1.0


def test_imagenet_source_gives_boxes_in_crop_pixels(tmp_path: Path) -> None:
    wnid = "n01440764"  # tench, ImageNet-1k index 0
    folder = tmp_path / "val" / wnid
    folder.mkdir(parents=True)
    Image.fromarray(np.full((256, 256, 3), 90, dtype=np.uint8)).save(folder / "a.JPEG")
    Image.fromarray(np.full((256, 256, 3), 90, dtype=np.uint8)).save(folder / "unboxed.JPEG")
    (folder / "a.xml").write_text(
        "<annotation><size><width>256</width><height>256</height></size><object><name>"
        f"{wnid}</name><bndbox><xmin>17</xmin><ymin>17</ymin><xmax>144</xmax><ymax>144</ymax></bndbox>"
        "</object></annotation>"
    )
    loaded = salmap.models.load("efficientnet_lite0")
    source = parse_source(f"imagenet:{tmp_path}", loaded, None, workers=0)
    assert source.size == 1 and not source.has_objects
    (batch,) = list(source.batches(2, loaded))
    assert batch.labels.tolist() == [0] and batch.images.shape == (1, 3, 224, 224)
    # resize 256 -> 256 (already the shorter side), centre crop 224 removes 16 px on each side
    assert batch.boxes[0].tolist() == [[0, 0, 128, 128]]
