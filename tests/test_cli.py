"""The `salmap` command end to end, and every bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from skimage import data

import salmap
from salmap.cli import main
from salmap.registry import method_names


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg")
    return folder


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "explaining" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("salmap: error:") and fragment in lines[0]
    assert "Traceback" not in err


def test_explain_two_photos_end_to_end(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "salmap",
            "explain",
            str(photos),
            "--method",
            "gradient,gradcam,cam",
            "--out",
            str(out),
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    assert document["model"] == "efficientnet_lite0" and "torch" in document["versions"]
    records = {(Path(r["image"]).stem, r["method"]): r for r in document["records"]}
    assert len(records) == 6
    assert records[("coffee", "gradcam")]["target_name"] == "espresso"
    assert records[("chelsea", "cam")]["target_name"] in {"tiger cat", "tabby", "Egyptian cat"}
    saliency = np.load(out / "chelsea" / "gradcam.npy")
    assert saliency.dtype == np.float32 and saliency.shape == data.chelsea().shape[:2]
    assert saliency.min() >= 0 and saliency.max() <= 1
    assert Image.open(out / "coffee" / "cam.png").size == (data.coffee().shape[1], data.coffee().shape[0])
    assert (out / "summary.png").stat().st_size > 0


def test_explain_with_a_named_target(photos: Path, tmp_path: Path, capsys) -> None:
    methods = ["gradient", "smoothgrad", "guided_backprop", "cam", "gradcam", "cameras"]
    code, out, _ = run_cli(
        capsys,
        "explain",
        str(photos / "chelsea.png"),
        "--method",
        ",".join(methods),
        "--target",
        "tabby",
        "--out",
        str(tmp_path),
        "--overwrite",
        "--samples",
        "3",
        "--scales",
        "2",
    )
    assert code == 0
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert [r["method"] for r in records] == methods
    assert {r["target"] for r in records} == {281}
    assert "figure:" in out


def test_explain_with_every_method(photos: Path, tmp_path: Path, capsys) -> None:
    """Every post-hoc method through the command line, on the small digits classifier (Score-CAM
    alone makes 1,281 forward passes per image on EfficientNet-Lite0)."""
    code, out, _ = run_cli(
        capsys,
        "explain",
        str(photos / "coffee.jpg"),
        "--model",
        "digits_cnn",
        "--method",
        "all",
        "--target",
        "3",
        "--out",
        str(tmp_path),
        "--smoothgrad-n",
        "3",
        "--cameras-steps",
        "2",
        "--integrated-gradients-steps",
        "4",
        "--integrated-gradients-baseline",
        "black",
        "--rise-n",
        "16",
    )
    assert code == 0
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert [r["method"] for r in records] == method_names(trained=False)
    assert {r["target"] for r in records} == {3}
    settings = {r["method"]: r["settings"] for r in records}
    assert settings["integrated_gradients"]["baseline"] == "black"
    assert settings["integrated_gradients"]["completeness_error"] >= 0
    assert settings["rise"]["n"] == 16
    for record in records:
        saliency = np.load(record["map"])
        assert saliency.shape == data.coffee().shape[:2] and 0 <= saliency.min() <= saliency.max() <= 1
    assert "figure:" in out


def test_nothing_is_overwritten_without_the_flag(photos: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "chelsea").mkdir()
    keep = tmp_path / "chelsea" / "gradient.png"
    keep.write_bytes(b"precious")
    code, _, err = run_cli(
        capsys, "explain", str(photos / "chelsea.png"), "--method", "gradient", "--out", str(tmp_path)
    )
    assert_one_line_error(code, err, "--overwrite")
    assert keep.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["chelsea", "gradient.png"]


def test_unreadable_files_in_a_directory_are_skipped(photos: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.jpg").write_text("not an image")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    code, _, err = run_cli(
        capsys, "explain", str(folder), "--method", "gradcam", "--out", str(tmp_path / "o")
    )
    assert code == 0 and "skipped" in err and "broken.jpg" in err
    assert (tmp_path / "o" / "coffee" / "gradcam.npy").exists()


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["explain", "MISSING.png"], "no such file"),
        (["explain", "{photos}/chelsea.png", "--method", "magic"], "unknown method"),
        (["explain", "{photos}/chelsea.png", "--model", "no_such_model"], "unknown model"),
        (["explain", "{photos}/chelsea.png", "--target", "1000", "--method", "cam"], "out of range"),
        (["explain", "{photos}/chelsea.png", "--target", "unicorn"], "unknown class name"),
        (["explain", "{photos}/chelsea.png", "--device", "cuda:7"], "CUDA"),
        (["explain", "{empty}"], "no images in directory"),
        (["explain", "{text}"], "cannot read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments, fragment, photos, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.png").write_text("text")
    values = {"photos": photos, "empty": tmp_path / "empty", "text": tmp_path / "notes.png"}
    arguments = [a.format(**values) for a in arguments] + ["--out", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, *arguments)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out").exists()


def test_cam_on_a_model_without_gap_and_linear(photos: Path, tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "squeeze.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), checkpoint)
    code, _, err = run_cli(
        capsys,
        "explain",
        str(photos / "coffee.jpg"),
        "--model",
        str(checkpoint),
        "--arch",
        "squeezenet1_1",
        "--method",
        "cam",
        "--out",
        str(tmp_path / "out"),
    )
    assert_one_line_error(code, err, "CAM needs global average pooling")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npy"))


def test_listings(capsys) -> None:
    code, out, _ = run_cli(capsys, "methods")
    listed = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert code == 0 and listed == method_names() and "cameras" in listed and "casm" in listed
    assert "--smoothgrad-n" in out and "--cameras-steps" in out
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "efficientnet_lite0" in out


def test_installed_entry_point_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        ["salmap", "explain", str(tmp_path / "absent.png")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        executable=str(Path(sys.executable).parent / "salmap"),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"salmap: error: no such file or directory: {tmp_path / 'absent.png'}"
    ]


def test_casm_and_baseline_on_the_digits_with_shipped_checkpoints(tmp_path: Path, capsys) -> None:
    from salmap.data.digits import DIGITS_MEAN, DIGITS_STD, build_split

    sample = build_split("test", 1, seed=3)
    pixels = (sample.images[0, 0] * DIGITS_STD[0] + DIGITS_MEAN[0]).clamp(0, 1).numpy()
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(tmp_path / "digit.png")
    code, _, err = run_cli(
        capsys,
        "explain",
        str(tmp_path / "digit.png"),
        "--model",
        "digits_cnn",
        "--method",
        "casm,baseline,gradcam",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, err
    records = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    by_method = {r["method"]: r for r in records}
    assert by_method["casm"]["settings"]["thinning"] != "F"
    assert by_method["baseline"]["settings"]["thinning"] == "F"
    assert np.load(tmp_path / "out" / "digit" / "casm.npy").shape == (64, 64)
    loaded = salmap.models.load("digits_cnn")
    with torch.no_grad():
        probabilities = loaded.model(
            loaded.preprocess(salmap.load_image(tmp_path / "digit.png"))[None]
        ).softmax(1)
    for record in records:  # the explained model's prediction, not that of CASM's own classifier
        assert record["target"] == int(probabilities.argmax())
        assert record["score"] == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_casm_needs_a_checkpoint_for_other_models(photos: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(
        capsys, "explain", str(photos / "coffee.jpg"), "--method", "casm", "--out", str(tmp_path / "o")
    )
    assert_one_line_error(code, err, "needs a trained checkpoint")


def test_a_directory_larger_than_a_batch_goes_through_loader_workers(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.ascontiguousarray(data.coffee()[:, i * 20 :])).save(folder / f"cup_{i}.png")
    (folder / "cup_9.png").write_text("broken")
    code, _, err = run_cli(
        capsys, "explain", str(folder), "--method", "cam", "--batch-size", "2", "--out", str(tmp_path / "o")
    )
    assert code == 0 and "cup_9.png" in err
    records = json.loads((tmp_path / "o" / "results.json").read_text())["records"]
    assert [Path(r["image"]).stem for r in records] == [f"cup_{i}" for i in range(5)]
    assert all((tmp_path / "o" / f"cup_{i}" / "cam.npy").exists() for i in range(5))
