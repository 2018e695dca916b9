"""`salmap explain` killed mid-folder by SIGKILL, then `--resume`: the finished images are kept (not
explained again), the rest computed, and the maps and results.json equal an uninterrupted run's;
its loader worker dies with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from salmap.cli import main
from salmap.errors import SalmapError

IMAGES, BATCH, FINISHED_BATCHES = 10, 2, 3
METHODS = "gradient,gradcam"

# Runs `salmap` with two observers: every explainer call is logged (method, images), and with
# SALMAP_TEST_STOP=k the run stops for good in its (k+1)-th batch while the loader worker sleeps
# on the file named by SALMAP_TEST_SLOW: the test then kills it mid-folder.
RUNNER = """
import os, sys, time
import torch.utils.data
import salmap.explain.run as run
from salmap.explainers.base import Explainer
from salmap.cli import main

explanation = Explainer.explanation
def logged(self, x, *args, **kwargs):
    with open(os.environ["SALMAP_TEST_LOG"], "a") as handle:
        handle.write(f"{self.name} {x.shape[0]}\\n")
    return explanation(self, x, *args, **kwargs)
Explainer.explanation = logged

stop, seen = int(os.environ.get("SALMAP_TEST_STOP", "0")), []
explain_batch = run.explain_batch
def stopping(*args, **kwargs):
    seen.append(1)
    if stop and len(seen) > stop:
        time.sleep(600)
    return explain_batch(*args, **kwargs)
run.explain_batch = stopping

read = run.ImageFiles.__getitem__
def slow(self, index):
    if torch.utils.data.get_worker_info() and self.paths[index].name == os.environ.get("SALMAP_TEST_SLOW"):
        time.sleep(600)
    return read(self, index)
run.ImageFiles.__getitem__ = slow
sys.exit(main(sys.argv[1:]))
"""


def salmap_command(runner: Path, log: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(runner), *args],
        env={**os.environ, "SALMAP_TEST_LOG": str(log), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def image_lines(journal: Path) -> int:
    if not journal.is_file():
        return 0
    return sum('"maps"' in line for line in journal.read_text().splitlines())


def finished_images(out: Path) -> int:
    """Images whose files are all written and, where the run keeps a record, recorded."""
    written = sum(
        all((folder / f"{m}.png").is_file() for m in METHODS.split(",")) for folder in out.glob("*/")
    )
    return min(written, image_lines(out / "records.jsonl")) if (out / "records.jsonl").exists() else written


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running or sleeping: not gone and not a zombie waiting to be reaped."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A folder of photos, an uninterrupted run of it, and a run killed by SIGKILL after three
    finished batches while its loader worker was busy; the worker's pid and its state after."""
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to see processes")
    root = tmp_path_factory.mktemp("resume")
    photos = root / "photos"
    photos.mkdir()
    coffee = data.coffee()
    for i in range(IMAGES):
        Image.fromarray(np.ascontiguousarray(coffee[::3, i * 12 :: 3])).save(photos / f"cup_{i}.png")
    runner = root / "runner.py"
    runner.write_text(RUNNER)
    common = [str(photos), "--method", METHODS, "--batch-size", str(BATCH)]
    assert main(["explain", *common, "--out", str(root / "whole")]) == 0
    out = root / "killed"
    process = salmap_command(
        runner,
        root / "killed.log",
        "explain",
        *common,
        "--out",
        str(out),
        SALMAP_TEST_STOP=str(FINISHED_BATCHES),
        SALMAP_TEST_SLOW=f"cup_{IMAGES - 1}.png",
    )
    deadline = time.monotonic() + 300
    while finished_images(out) < FINISHED_BATCHES * BATCH and process.poll() is None:
        assert time.monotonic() < deadline, "the run did not finish its first batches"
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(2)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    return root, runner, common, workers, survivors


def test_loader_workers_die_with_a_killed_run(killed_run) -> None:
    _, _, _, workers, survivors = killed_run
    assert workers, "the run had no loader worker"
    assert survivors == []


def test_resume_after_sigkill_keeps_the_finished_images_and_equals_an_uninterrupted_run(killed_run) -> None:
    root, runner, common, _, _ = killed_run
    out, whole = root / "killed", root / "whole"
    assert not (out / "results.json").exists()
    finished = image_lines(out / "records.jsonl")
    assert finished == FINISHED_BATCHES * BATCH
    process = salmap_command(runner, root / "resumed.log", "explain", *common, "--out", str(out), "--resume")
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    calls: dict[str, int] = {}
    for line in (root / "resumed.log").read_text().splitlines():
        method, count = line.split()
        calls[method] = calls.get(method, 0) + int(count)
    assert calls == {"gradient": IMAGES - finished, "gradcam": IMAGES - finished}
    assert f"kept {2 * finished} map(s)" in stdout
    expected = json.loads((whole / "results.json").read_text())
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["choices"] == expected["choices"] and resumed["skipped"] == expected["skipped"]
    assert len(resumed["records"]) == len(expected["records"]) == 2 * IMAGES
    for ours, theirs in zip(resumed["records"], expected["records"], strict=True):
        assert ours.pop("score") == pytest.approx(theirs.pop("score"), abs=1e-5)
        assert ours["map"] == theirs["map"].replace(str(whole), str(out))
        assert ours["overlay"] == theirs["overlay"].replace(str(whole), str(out))
        for key in ("image", "method", "target", "target_name", "settings"):
            assert ours[key] == theirs[key]
        np.testing.assert_allclose(np.load(ours["map"]), np.load(theirs["map"]), atol=1e-5)
    assert (out / "summary.png").is_file()
    assert not list(out.rglob(".*partial*"))


def test_resume_recomputes_torn_changed_and_differently_set_maps(tmp_path: Path, one_thread) -> None:
    from conftest import TinyGapNet, tiny_loaded

    from salmap.explain import explain_files
    from salmap.explainers import GradCAM, SmoothGrad

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        Image.fromarray(np.ascontiguousarray(data.coffee()[i * 30 :: 8, ::8])).save(photos / f"cup_{i}.png")
    loaded = tiny_loaded(TinyGapNet())

    def run(n: int = 3, **options):
        explainers = {
            "gradcam": GradCAM(loaded.model, layer="conv2"),
            "smoothgrad": SmoothGrad.build(loaded.model, n=n),
        }
        return explain_files(
            [photos], loaded, explainers, tmp_path / "out", batch_size=2, progress=False, **options
        )

    first = run()
    journal = tmp_path / "out" / "records.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 5
    torn = json.loads(lines[-1])["folder"]
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # killed while appending
    Image.fromarray(data.coffee()[::9, ::9]).save(photos / "cup_0.png")  # an input changed since
    resumed = run(resume=True)
    assert resumed.kept == 2 * 2  # two images, both methods
    appended = [json.loads(line)["folder"] for line in journal.read_text().splitlines()[len(lines) :]]
    assert sorted(appended) == sorted({"cup_0", torn})
    assert len(resumed.records) == len(first.records) == 8
    again = run(n=4, resume=True)  # SmoothGrad with other settings: every image is explained again
    assert again.kept == 0 and {r.method for r in again.records if r.settings.get("n") == 4} == {"smoothgrad"}
    with pytest.raises(SalmapError, match="choose one"):
        run(resume=True, overwrite=True)
    journal.unlink()
    with pytest.raises(SalmapError, match="nothing to resume"):
        run(resume=True)
