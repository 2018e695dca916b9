"""Output files of `salmap explain` stay inside --out, never collide with the run's own files, never
replace a user's file, and a full disk or an unwritable --out is one clear line with what
completed kept on record."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TinyGapNet, tiny_loaded, unprivileged
from PIL import Image
from skimage import data

import salmap.io
from salmap.errors import SalmapError
from salmap.explain import explain_files
from salmap.explainers import GradCAM, Gradient
from salmap.io import write_atomically


def photo(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """A real photo's crop (scikit-image's coffee) saved as PNG at `path`."""
    top = 40 * seed
    pixels = np.ascontiguousarray(data.coffee()[top : top + 3 * size[1] : 3, : 3 * size[0] : 3])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def explain(inputs, out: Path, **options):
    loaded = tiny_loaded(TinyGapNet())
    explainers = {"gradient": Gradient(loaded.model), "gradcam": GradCAM(loaded.model, layer="conv2")}
    return explain_files(inputs, loaded, explainers, out, batch_size=2, progress=False, **options)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_dot_names_stay_inside_the_output_folder_and_user_files_are_kept(tmp_path: Path, one_thread) -> None:
    inputs = tmp_path / "in"
    photo(inputs / "...png")  # stem ".."
    photo(inputs / "..png", seed=1)  # stem "."
    photo(inputs / "cup.png", seed=2)
    work = tmp_path / "work"
    work.mkdir()
    precious = {name: work / name for name in ("gradient.npy", "gradient.png", "gradcam.npy", "gradcam.png")}
    for name, path in precious.items():
        path.write_bytes(name.encode())
    out = work / "out"
    report = explain([inputs], out)
    assert {path.name: path.read_bytes() for path in precious.values()} == {n: n.encode() for n in precious}
    assert sorted(p.name for p in work.iterdir()) == sorted([*precious, "out"])
    folders = {Path(record.map).parent for record in report.records}
    assert all(folder.parent == out for folder in folders) and len(folders) == 3
    assert not any(name.startswith(".") for name in files_under(out))
    assert (out / "results.json").is_file() and (out / "summary.png").is_file()


def test_an_image_named_after_the_results_file_does_not_collide(tmp_path: Path, one_thread) -> None:
    inputs = tmp_path / "in"
    photo(inputs / "results.json.png")
    photo(inputs / "Summary.png.png", seed=1)
    photo(inputs / "records.jsonl.png", seed=2)
    out = tmp_path / "out"
    report = explain([inputs], out)
    document = json.loads((out / "results.json").read_text())
    assert len(document["records"]) == 6
    assert (out / "summary.png").is_file() and (out / "records.jsonl").is_file()
    folders = {Path(record.map).parent.name for record in report.records}
    assert folders == {"results.json_2", "Summary.png_2", "records.jsonl_2"}


def test_a_link_out_of_the_output_folder_is_refused(tmp_path: Path, one_thread) -> None:
    photo(tmp_path / "in" / "cup.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "cup").symlink_to(elsewhere)
    with pytest.raises(SalmapError, match="outside"):
        explain([tmp_path / "in"], out, overwrite=True)
    assert list(elsewhere.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    from salmap.cli import main

    photo(tmp_path / "cup.png")
    (tmp_path / "taken").write_text("a user's file")
    code = main(["explain", str(tmp_path / "cup.png"), "--out", str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert code == 2 and "is a file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "taken").read_text() == "a user's file"
    code = main(["explain", str(tmp_path / "cup.png"), "--out", str(tmp_path / "taken" / "below")])
    assert code == 2 and "not a folder" in capsys.readouterr().err


def salmap_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "salmap", *args]


def run_salmap(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    photo(tmp_path / "cup.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    os.chmod(tmp_path, 0o755)
    try:
        result = run_salmap(
            unprivileged(salmap_command("explain", str(tmp_path / "cup.png"), "--out", str(locked / "out")))
        )
    finally:
        os.chmod(locked, 0o755)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"salmap: error: cannot write in {locked}: it is read-only or not ours; choose another --out"
    ]


def test_a_write_error_removes_the_partial_file_and_names_it() -> None:
    path = Path("/proc/version-salmap-test")  # /proc takes no new files
    with pytest.raises(SalmapError, match=f"cannot write {path}"):
        write_atomically(path, lambda temporary: temporary.write_bytes(b"x"))


def test_a_full_disk_is_one_line_keeps_what_completed_and_resumes(
    tmp_path: Path, monkeypatch, one_thread
) -> None:
    """Injected: the map of the second image finds the disk full half-way through."""
    inputs = tmp_path / "in"
    for i, name in enumerate("abc"):
        photo(inputs / f"{name}.png", seed=i)
    out = tmp_path / "out"
    save = np.save

    def full_disk(handle, array, *args, **kwargs):
        if "/b/" in handle.name:
            handle.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(handle, array, *args, **kwargs)

    monkeypatch.setattr(salmap.io.np, "save", full_disk)
    with pytest.raises(SalmapError) as failure:
        explain([inputs], out)
    message = str(failure.value)
    assert "\n" not in message and "no space left" in message
    assert str(out / "b") in message and "needed" in message and "free" in message
    assert not [name for name in files_under(out) if "partial" in name]
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()[1:]]
    recorded = {line["folder"] for line in lines}
    assert "a" in recorded and "b" not in recorded
    assert not (out / "results.json").exists()
    monkeypatch.undo()
    report = explain([inputs], out, resume=True)
    assert report.kept == 2 * len(recorded)
    assert len(report.records) == 6 and (out / "results.json").is_file()
    assert np.load(out / "b" / "gradient.npy").shape == (40, 48)


FULL_DISK_SCRIPT = """
set -e
mount -t tmpfs -o size=160k tmpfs "$DISK"
set +e
"$PYTHON" -m salmap explain "$INPUTS" --method gradient --batch-size 1 --out "$DISK/out" 2>"$DISK/../stderr"
echo "exit $?"
find "$DISK/out" -name '*partial*' | sed 's/^/partial /'
grep -c '"maps"' "$DISK/out/records.jsonl" | sed 's/^/recorded /'
ls "$DISK/out" | sed 's/^/entry /'
"""


def test_a_full_small_file_system(tmp_path: Path) -> None:
    """A real full disk: a 160 kB tmpfs in a private mount namespace, where the platform allows."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux namespaces")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f"mount -t tmpfs tmpfs {tmp_path}"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("no private mount namespace here: the injected full disk test covers it")
    inputs = tmp_path / "in"
    for i in range(6):
        photo(inputs / f"cup_{i}.png", size=(120, 90), seed=i)
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {
        **os.environ,
        "DISK": str(disk),
        "INPUTS": str(inputs),
        "PYTHON": sys.executable,
    }
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", FULL_DISK_SCRIPT],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    report = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    stderr = (tmp_path / "stderr").read_text()
    assert report["exit"] == "2", stderr
    errors = [line for line in stderr.splitlines() if line.startswith("salmap:")]
    assert len(errors) == 1 and "no space left on the device to write" in errors[0], stderr
    assert "needed" in errors[0] and "Traceback" not in stderr
    assert "partial" not in report
    assert 1 <= int(report["recorded"]) < 6
