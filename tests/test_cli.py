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


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory) -> Path:
    """A state dict of timm's vit_tiny_patch16_224 (random weights), as a user would save it."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit") / "vit.pt"
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), path)
    return path


def test_explain_a_vision_transformer_checkpoint_with_every_method(
    photos: Path, vit_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model_arguments = ["--model", str(vit_checkpoint), "--arch", "vit_tiny_patch16_224"]
    code, _, err = run_cli(
        capsys,
        "explain",
        str(photos / "chelsea.png"),
        *model_arguments,
        "--method",
        "all",
        "--smoothgrad-n",
        "2",
        "--cameras-steps",
        "2",
        "--integrated-gradients-steps",
        "2",
        "--occlusion-window",
        "112",
        "--rise-n",
        "8",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    shown = err.splitlines()
    reading = "tokens (B, 197, 192) read as a 14x14 grid after 1 prefix token (timm patch_embed)"
    assert f"gradcam: layer blocks.11.norm1 (auto); {reading}" in shown
    assert any(line.startswith("cameras: layer blocks.11.norm1 (auto)") for line in shown)
    assert any(line.startswith("guided_backprop: left out: guided backprop changes") for line in shown)
    assert any(line.startswith("cam: left out: CAM needs global average pooling") for line in shown)
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    refused = {"guided_backprop", "cam"}
    assert [r["method"] for r in records] == [
        m for m in salmap.method_names(trained=False) if m not in refused
    ]
    gradcam = next(r for r in records if r["method"] == "gradcam")
    assert gradcam["choices"] == {"layer": "blocks.11.norm1 (auto)", "reading": reading}

    loaded = salmap.models.load(str(vit_checkpoint), arch="vit_tiny_patch16_224")
    assert loaded.target_layer == "blocks.11.norm1" and loaded.mean == (0.5, 0.5, 0.5)
    image = salmap.load_image(photos / "chelsea.png")
    x = loaded.preprocess(image)[None]
    layer = loaded.model.blocks[11].norm1
    with PeerGradCAM(model=loaded.model, target_layers=[layer], reshape_transform=_vit_tokens) as peer:
        theirs = peer(
            input_tensor=x.requires_grad_(True), targets=[ClassifierOutputTarget(gradcam["target"])]
        )
    expected = salmap.map_to_image(
        torch.from_numpy(theirs[0]), (image.height, image.width), loaded.resize, (224, 224)
    )
    written = np.load(tmp_path / "chelsea" / "gradcam.npy")
    assert np.corrcoef(written.ravel(), expected.ravel())[0, 1] > 0.999


def _vit_tokens(tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's documented reshape_transform for a 224 px ViT-B/16-style model."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 14, 14, tensor.size(2)).permute(0, 3, 1, 2)


def test_a_method_asked_for_by_name_that_refuses_the_model_is_the_error(
    photos: Path, vit_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    code, _, err = run_cli(
        capsys,
        "explain",
        str(photos / "chelsea.png"),
        "--model",
        str(vit_checkpoint),
        "--arch",
        "vit_tiny_patch16_224",
        "--method",
        "gradcam,guided_backprop",
        "--out",
        str(tmp_path / "out"),
    )
    assert_one_line_error(code, err, "guided_backprop: guided backprop changes the backward pass of ReLUs")
    assert not (tmp_path / "out").exists()


class BatchOfOne(torch.nn.Module):
    """A classifier exported for batches of one image: its flatten keeps a batch of one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).reshape(1, -1))


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_failure_in_a_model_is_one_line_and_exit_1(photos: Path, tmp_path: Path, debug, capsys):
    checkpoint = tmp_path / "batch_of_one.pt"
    torch.jit.script(BatchOfOne().eval()).save(str(checkpoint))
    flags = ["--debug"] if debug else []
    code, _, err = run_cli(
        capsys,
        *flags,
        "explain",
        str(photos),
        "--model",
        str(checkpoint),
        "--method",
        "gradient",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("salmap: error:")]
    assert len(lines) == 1 and ("Traceback" in err) == debug
    assert lines[0].startswith(f"salmap: error: explain failed on model {checkpoint} in method gradient: ")
    assert "(--debug shows the traceback)" in lines[0]


@pytest.mark.parametrize(
    "arguments",
    [
        ["explain"],
        ["explain", "x.png", "--no-such-option"],
        ["evaluate", "--data", "digits", "--limit", "many"],
        ["no-such-command"],
    ],
)
def test_bad_options_are_one_line_and_exit_2(arguments: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "error:" in err and "--help" in err
