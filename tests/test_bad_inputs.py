"""Bad input is refused or skipped with one clear line: decompression bombs, layers without a
spatial output, runs far costlier than usual, non-finite pixels, ambiguous class names, float
targets, devices that cannot run a model, unreadable files and folders; and text in any script
draws without warnings."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyGapNet, tiny_loaded, unprivileged
from PIL import Image
from skimage import data

from salmap.cli import main
from salmap.errors import SalmapError
from salmap.explain import explain_files
from salmap.explainers import Gradient
from salmap.figures import method_grid
from salmap.images import load_image, pixel_limit
from salmap.models import LoadedModel, load
from salmap.registry import make_explainer, method_names


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "explaining" not in line]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("salmap: error:") and "Traceback" not in err
    return lines[0]


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces `width` x `height` pixels (a decompression bomb as Pillow
    sees it: the size is judged from the header, before anything is decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_skipped_in_a_folder_and_refused_when_named(
    tmp_path: Path, one_thread
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    png_header(folder / "bomb.png", 14000, 14000)
    Image.fromarray(np.ascontiguousarray(data.coffee()[::8, ::8])).save(folder / "cup.png")
    loaded = tiny_loaded(TinyGapNet())
    report = explain_files(
        [folder], loaded, {"gradient": Gradient(loaded.model)}, tmp_path / "out", progress=False
    )
    ((path, reason),) = report.skipped
    assert path.name == "bomb.png"
    assert "196,000,000 pixels" in reason and f"{pixel_limit():,}" in reason and "--max-pixels" in reason
    assert [Path(record.image).name for record in report.records] == ["cup.png"]
    with pytest.raises(SalmapError, match="--max-pixels 196000000"):
        load_image(folder / "bomb.png")


def test_a_huge_jpeg_is_decoded_reduced_under_the_limit(tmp_path: Path) -> None:
    photo = Image.fromarray(data.astronaut()).resize((3000, 2000), Image.BICUBIC)
    photo.save(tmp_path / "big.jpg", quality=90)
    full = load_image(tmp_path / "big.jpg")
    assert full.size == (3000, 2000)
    reduced = load_image(tmp_path / "big.jpg", max_pixels=1_000_000)
    assert reduced.size == (750, 500) and reduced.mode == "RGB"
    expected = np.asarray(full.resize((750, 500), Image.BOX), dtype=np.float32)
    assert np.abs(np.asarray(reduced, dtype=np.float32) - expected).mean() < 4.0
    png = tmp_path / "big.png"
    photo.save(png)
    with pytest.raises(SalmapError, match="6,000,000 pixels, over the limit of 1,000,000"):
        load_image(png, max_pixels=1_000_000)


def test_the_command_line_names_the_layer_and_its_shape(tmp_path: Path, capsys) -> None:
    Image.fromarray(data.coffee()[::4, ::4]).save(tmp_path / "cup.png")
    code = main(
        [
            "explain",
            str(tmp_path / "cup.png"),
            "--method",
            "gradcam",
            "--layer",
            "classifier",
            "--out",
            str(tmp_path),
        ]
    )
    line = one_line_error(code, capsys.readouterr().err)
    assert "layer classifier's output (B, 1000)" in line and "no spatial positions" in line


def test_a_run_far_above_the_usual_cost_needs_force(tmp_path: Path, capsys) -> None:
    Image.fromarray(data.coffee()[::4, ::4]).save(tmp_path / "cup.png")
    for option in ("--cameras-steps", "--scales"):
        code = main(
            [
                "explain",
                str(tmp_path / "cup.png"),
                "--method",
                "cameras",
                option,
                "50",
                "--out",
                str(tmp_path),
            ]
        )
        line = one_line_error(code, capsys.readouterr().err)
        assert "cameras" in line and "151x its default time" in line and "--force" in line
    assert not (tmp_path / "cup").exists()
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "--force" in capsys.readouterr().out


def test_costs_are_counted_in_passes_at_the_input_size(tiny_net, capsys) -> None:
    from salmap.cli.common import check_cost
    from salmap.cost import costs

    loaded = tiny_loaded(tiny_net)
    found = {
        cost.method: cost
        for cost in costs(
            {
                "gradient": make_explainer("gradient", tiny_net),
                "smoothgrad": make_explainer("smoothgrad", tiny_net, n=1000),
                "cameras": make_explainer("cameras", tiny_net, steps=2, step_size=16),
            },
            loaded,
        )
    }
    assert found["gradient"].passes == found["gradient"].default == 1
    assert found["smoothgrad"].ratio == 20  # 1000 noisy copies against 50
    assert found["cameras"].passes == 1 + 4  # 16 px and 32 px sides
    explainers = {"smoothgrad": make_explainer("smoothgrad", tiny_net, n=1000)}
    with pytest.raises(SalmapError, match="20x its default"):
        check_cost(explainers, loaded, force=False)
    check_cost(explainers, loaded, force=True)
    assert "20x its default" in capsys.readouterr().err


@pytest.mark.parametrize("name", method_names(False))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pixels_are_refused_by_every_method(name, bad, tiny_net, images) -> None:
    images = images.clone()
    images[1, 0, 3, 3] = bad
    explainer = make_explainer(name, tiny_net, layer="conv2")
    with pytest.raises(SalmapError, match="NaN or infinite"):
        explainer(images)


def names_model(names: list[str]) -> LoadedModel:
    loaded = tiny_loaded(TinyGapNet(len(names)))
    loaded.class_names = names
    return loaded


def test_class_names_exact_spelling_wins_and_ambiguity_lists_the_matches() -> None:
    loaded = names_model(["Cardigan", "cardigan", "crane", "crane", "Tabby"])
    assert loaded.class_index("cardigan") == 1 and loaded.class_index("Cardigan") == 0
    assert loaded.class_index("tabby") == 4
    with pytest.raises(SalmapError, match=r"matches several classes: 0 \(Cardigan\), 1 \(cardigan\)"):
        loaded.class_index("CARDIGAN")
    with pytest.raises(SalmapError, match=r"2 \(crane\), 3 \(crane\); give the index"):
        loaded.class_index("crane")
    imagenet = load("efficientnet_lite0")
    assert imagenet.class_index("cardigan") == 474 and imagenet.class_index("Cardigan") == 264


def test_non_ascii_names_draw_without_warnings(tmp_path: Path, capfd) -> None:
    picture = Image.fromarray(data.coffee()[::8, ::8])
    title = "猫 café Ωμέγα ٣ 🐱 $5_$6\nتصوير 0.50"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method_grid([picture], ["gradcam"], [[picture]], [title], tmp_path / "summary.png")
    assert capfd.readouterr().err == ""
    assert Image.open(tmp_path / "summary.png").size[0] > 100
    from salmap.figures.text import MISSING, drawable

    shown = drawable(title)
    assert "café" in shown and "Ωμέγα" in shown and r"\$5_\$6" in shown
    assert len(shown) == len(title) + 2 and set(shown) - set(title) <= {MISSING, "\\"}


@pytest.mark.parametrize("target", [2.9, [2.9, 1.0, 0.0, 1.0], torch.tensor([2.9, 1.0, 0.0, 1.0])])
def test_float_targets_are_refused(target, tiny_net, images) -> None:
    with pytest.raises(SalmapError, match="integer class indices"):
        Gradient(tiny_net)(images, target=target)


def test_a_device_that_cannot_run_a_model_is_refused(tmp_path: Path, capsys) -> None:
    Image.fromarray(data.coffee()[::4, ::4]).save(tmp_path / "cup.png")
    code = main(["explain", str(tmp_path / "cup.png"), "--device", "meta", "--out", str(tmp_path / "out")])
    assert "device 'meta' cannot run a model" in one_line_error(code, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_when_no_file_can_be_read_each_reason_is_given(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.png").write_text("text, not a picture")
    (folder / "empty.jpg").write_bytes(b"")
    png_header(folder / "bomb.png", 14000, 14000)
    code = main(["explain", str(folder), "--method", "gradient", "--out", str(tmp_path / "out")])
    line = one_line_error(code, capsys.readouterr().err)
    assert "none of the images could be read" in line
    for name in ("notes.png", "empty.jpg", "bomb.png"):
        assert name in line
    assert "UnidentifiedImageError" in line and "--max-pixels" in line


SCAN = """
import sys
from salmap.images import scan_images
found, unreadable = scan_images([sys.argv[1]])
print(sorted(path.name for path in found))
print([(path.name, reason) for path, reason in unreadable])
"""


def test_an_unreadable_folder_inside_the_inputs_is_reported(tmp_path: Path) -> None:
    Image.fromarray(data.coffee()[::8, ::8]).save(tmp_path / "cup.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    Image.fromarray(data.coffee()[::8, ::8]).save(locked / "hidden.png")
    os.chmod(locked, 0)
    try:
        result = subprocess.run(
            unprivileged([sys.executable, "-c", SCAN, str(tmp_path)]),
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.chmod(locked, 0o755)
    assert result.returncode == 0, result.stderr
    found, unreadable = result.stdout.splitlines()
    assert found == "['cup.png']"
    assert unreadable == "[('locked', 'cannot read the folder (Permission denied)')]"
