"""`salmap explain` and `salmap evaluate` under `torchrun` with two Gloo processes on CPU write what
one process writes."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salmap.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`salmap ARGS` in two processes, each on one thread."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, "-m", "salmap", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def assert_close(a: object, b: object, where: str = "") -> None:
    """Equal documents, floats to 1e-6 (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_close(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_sharded_explain_writes_what_one_process_writes(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        pixels = rng.integers(0, 256, (36 + 4 * i, 44, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "more" / "photo0.png")
    (folder / "broken.png").write_text("not an image")
    arguments = ["explain", str(folder), "--model", "digits_cnn", "--method", "gradient,gradcam"]
    arguments += ["--batch-size", "2"]
    assert main([*arguments, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    result = torchrun(*arguments, "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("explained 6 image(s)") == 1
    assert result.stderr.count(f"skipped {folder / 'broken.png'}") == 1
    one, two = (
        json.loads((tmp_path / out / "results.json").read_text().replace(f'"{tmp_path / out}/', '"OUT/'))
        for out in ("one", "two")
    )
    assert len(one["records"]) == 12 and len(one["skipped"]) == 1
    assert_close(one, two)
    maps = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*.npy"))
    assert maps == sorted(path.relative_to(tmp_path / "two") for path in (tmp_path / "two").rglob("*.npy"))
    for path in maps:
        assert np.array_equal(np.load(tmp_path / "one" / path), np.load(tmp_path / "two" / path)), path
    assert (tmp_path / "two" / "summary.png").stat().st_size > 0
    written = (tmp_path / "two" / "results.json").stat().st_mtime_ns
    again = torchrun(*arguments, "--out", str(tmp_path / "two"))
    assert again.returncode != 0 and "pass --overwrite" in again.stderr
    assert (tmp_path / "two" / "results.json").stat().st_mtime_ns == written


def test_sharded_evaluate_writes_what_one_process_writes(tmp_path: Path, capsys) -> None:
    arguments = ["evaluate", "--data", "digits:twin", "--limit", "6", "--batch-size", "2"]
    arguments += ["--method", "gradient,gradcam", "--sanity-images", "2"]
    assert main([*arguments, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    result = torchrun(*arguments, "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"report: {tmp_path / 'two' / 'report.md'}") == 1
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one.pop("seconds") > 0 and two.pop("seconds") > 0
    assert one["images"] == 6
    assert_close(one, two)
    reports = [
        re.sub(r"Wall time \d+ s", "", (tmp_path / out / "report.md").read_text()) for out in ("one", "two")
    ]
    assert reports[0] == reports[1]
    for name in ("gallery.png", "curves.png", "sanity.png"):
        assert (tmp_path / "two" / name).stat().st_size > 0
