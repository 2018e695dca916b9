"""`salmap evaluate --resume` after a stopped run, and bad ImageNet annotations reported per file
and left out rather than aborting the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from skimage import data

import salmap.evaluation.runner as runner
from salmap.cli import main

WNID = "n01440764"  # tench, ImageNet-1k index 0


def metrics(folder: Path) -> dict:
    document = json.loads((folder / "metrics.json").read_text())
    document.pop("seconds")
    return document


def test_evaluate_resumes_a_stopped_run_and_computes_only_the_rest(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    common = [
        "evaluate",
        "--data",
        "digits",
        "--limit",
        "12",
        "--batch-size",
        "4",
        "--method",
        "gradient,cam",
    ]
    common += ["--sanity-images", "2"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    evaluated: list[int] = []
    original = runner._evaluate_batch

    def stopping(number, *args, **kwargs):
        if number == 2:
            raise KeyboardInterrupt  # the run is stopped in its third batch
        evaluated.append(number)
        return original(number, *args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate_batch", stopping)
    out = tmp_path / "stopped"
    assert main([*common, "--out", str(out)]) == 130
    assert evaluated == [0, 1] and not (out / "metrics.json").exists()
    code = main([*common, "--out", str(out)])
    assert code == 2 and "--resume" in capsys.readouterr().err
    code = main([*common, "--out", str(out), "--resume", "--method", "cam"])
    assert code == 2 and "methods differ" in capsys.readouterr().err
    code = main([*common, "--out", str(out), "--resume", "--protocol", "casm"])
    assert code == 2 and "protocol differ" in capsys.readouterr().err
    monkeypatch.setattr(
        runner,
        "_evaluate_batch",
        lambda number, *a, **k: evaluated.append(number) or original(number, *a, **k),
    )
    evaluated.clear()
    assert main([*common, "--out", str(out), "--resume"]) == 0
    assert evaluated == [2]
    assert metrics(out) == metrics(tmp_path / "whole")
    assert (out / "sanity.png").is_file() and (out / "gallery.png").is_file()


def write_jpeg(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).resize(size).save(path, "JPEG")


def box_xml(path: Path, box: tuple[int, int, int, int], size: tuple[int, int]) -> None:
    path.write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size><object><name>"
        f"{WNID}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
        f"<ymax>{box[3]}</ymax></bndbox></object></annotation>"
    )


@pytest.fixture
def small_model(tmp_path: Path) -> list[str]:
    """A small ImageNet architecture with random weights, as a state-dict checkpoint."""
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "small.pt")
    return ["--model", str(tmp_path / "small.pt"), "--arch", "mobilenet_v3_small"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """One good image, one with a malformed XML, one whose only box is outside the centre crop."""
    folder = tmp_path / "imagenet" / "val" / WNID
    size = (256, 320)  # resize 256 keeps it; the crop drops 48 px at the top and the bottom
    for name in ("good", "broken", "outside"):
        write_jpeg(folder / f"{name}.JPEG", size)
    box_xml(folder / "good.xml", (20, 60, 200, 260), size)
    (folder / "broken.xml").write_text("<annotation><size><width>256</wid")
    box_xml(folder / "outside.xml", (1, 1, 100, 40), size)
    return tmp_path / "imagenet"


def test_bad_annotations_are_reported_per_file_and_left_out(tree, small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--data",
        f"imagenet:{tree}",
        "--method",
        "gradcam",
        "--sanity-images",
        "0",
        *small_model,
    ]
    assert main([*args, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("salmap: skipped")]
    assert len(skipped) == 2 and "Traceback" not in err
    assert "broken.JPEG" in skipped[0] and "broken.xml" in skipped[0]
    assert "outside.JPEG" in skipped[1] and f"no box of {WNID} inside the centre crop" in skipped[1]
    document = json.loads((out / "metrics.json").read_text())
    assert document["images"] == 1
    assert [Path(entry["image"]).name for entry in document["skipped"]] == ["broken.JPEG", "outside.JPEG"]
    assert "2 images left out" in (out / "report.md").read_text()


def test_an_image_that_fails_in_a_loader_worker_is_one_line(tree, small_model, tmp_path, capsys) -> None:
    good = tree / "val" / WNID / "good.JPEG"
    good.write_bytes(good.read_bytes()[:2000])  # the header reads, the pixels do not
    args = [
        "evaluate",
        "--data",
        f"imagenet:{tree}",
        "--method",
        "gradcam",
        "--sanity-images",
        "0",
        *small_model,
    ]
    code = main([*args, "--out", str(tmp_path / "out")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("salmap: error")]
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"salmap: error: cannot read image {good}: image file is truncated")
