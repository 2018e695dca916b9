"""Checkpoints that are not what they should be are refused with one line naming the file, never
loaded another way and never silently replaced by a new run; `train-casm` killed while writing a
checkpoint resumes to the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data
from test_casm_train import final_weights

from salmap.casm import CASM
from salmap.casm.checkpoint import load
from salmap.cli import main
from salmap.errors import SalmapError
from salmap.models import load as load_model

SHIPPED = CASM.shipped_checkpoint()


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("salmap: error:") and "Traceback" not in err
    return lines[0]


def test_a_digits_mapper_is_refused_for_an_imagenet_model(tmp_path: Path, capsys) -> None:
    Image.fromarray(data.coffee()[::4, ::4]).save(tmp_path / "cup.png")
    args = ["explain", str(tmp_path / "cup.png"), "--method", "casm", "--checkpoint", str(SHIPPED)]
    code = main([*args, "--out", str(tmp_path / "out")])
    line = one_line_error(code, capsys.readouterr().err)
    assert str(SHIPPED) in line and "digits_cnn" in line and "EfficientNet" in line
    assert not (tmp_path / "out").exists()
    digits = load_model("digits_cnn")
    assert CASM.build(digits.model, checkpoint=SHIPPED).info["backbone"]["arch"] == "digits_cnn"


def test_a_checkpoint_missing_keys_or_with_a_wrong_shape_is_one_line(tmp_path: Path) -> None:
    state = torch.load(SHIPPED, weights_only=True)
    partial = {key: value for key, value in state.items() if key != "backbone"}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(SalmapError) as failure:
        CASM.from_checkpoint(tmp_path / "partial.pt")
    assert (
        str(failure.value)
        == f"{tmp_path / 'partial.pt'} is not a complete salmap CASM checkpoint: it has no backbone"
    )
    classifier = dict(state["classifier"])
    classifier["stem.0.weight"] = torch.zeros(3, 3)
    torch.save({**state, "classifier": classifier}, tmp_path / "shape.pt")
    with pytest.raises(SalmapError) as failure:
        CASM.from_checkpoint(tmp_path / "shape.pt")
    message = str(failure.value)
    assert "\n" not in message and str(tmp_path / "shape.pt") in message
    assert "size mismatch for stem.0.weight" in message


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_an_untrusted_pickle_is_refused_without_advice_to_load_it(tmp_path: Path) -> None:
    torch.save({"format": "salmap-casm-v1", "mapper": Payload()}, tmp_path / "casm.pt")
    (tmp_path / "torn.pt").write_bytes(SHIPPED.read_bytes()[:4000])
    for name in ("casm.pt", "torn.pt"):
        with pytest.raises(SalmapError) as failure:
            load(tmp_path / name)
        message = str(failure.value)
        assert message.startswith(f"refusing {tmp_path / name}: it is not a salmap checkpoint")
        assert "weights_only" not in message and "trust the source" not in message and "\n" not in message


def digits_run(tmp_path: Path, *extra: str) -> list[str]:
    return ["train-casm", "--preset", "digits", "--out", str(tmp_path / "run"), "--no-progress", *extra]


def test_train_casm_resume_without_a_run_is_refused(tmp_path: Path, capsys) -> None:
    code = main(digits_run(tmp_path, "--resume", "--steps", "1"))
    line = one_line_error(code, capsys.readouterr().err)
    assert "nothing to resume" in line and "drop --resume" in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_train_casm_resume_with_a_corrupt_configuration_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"preset": "digits", "steps": ')
    code = main(digits_run(tmp_path, "--resume"))
    line = one_line_error(code, capsys.readouterr().err)
    assert str(tmp_path / "run" / "config.json") in line and "not a run's configuration" in line


def test_a_corrupt_training_checkpoint_is_refused_not_restarted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    final_weights(run, steps=4)
    (run / "checkpoint.pt").write_bytes(b"\x00" * 100)
    log = (run / "metrics.jsonl").read_text()
    with pytest.raises(SalmapError, match=r"checkpoint\.pt: it is not a salmap checkpoint"):
        final_weights(run, resume=True, steps=8)
    assert (run / "checkpoint.pt").read_bytes() == b"\x00" * 100
    assert (run / "metrics.jsonl").read_text() == log


KILLED_IN_A_WRITE = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import torch
from test_casm_train import final_weights

save, calls = torch.save, []
def dying_save(state, path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 2:  # the checkpoint of step 8: die half-way through writing it
        save(state, path, *args, **kwargs)
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    save(state, path, *args, **kwargs)
torch.save = dying_save
final_weights(sys.argv[1])
"""


def test_train_casm_killed_while_writing_a_checkpoint_resumes_to_the_same_weights(tmp_path: Path) -> None:
    whole = final_weights(tmp_path / "whole")
    killed = tmp_path / "killed"
    process = subprocess.run(
        [sys.executable, "-c", KILLED_IN_A_WRITE, str(killed), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == -9, process.stderr
    assert load(killed / "checkpoint.pt")["step"] == 4
    assert [path.name for path in killed.glob(".checkpoint.*.partial.pt")]  # the torn temporary file
    resumed = final_weights(killed, resume=True)
    assert not list(killed.glob(".*partial*"))
    assert resumed["step"] == whole["step"] == 12
    for part in ("classifier", "mapper"):
        for key, value in whole[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(2, 13, 2))
