"""`salmap train-casm`: a short digits run, resumed for one more step."""

import json

from salmap.casm import CASM
from salmap.cli import main


def test_train_casm_command_writes_a_run_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train-casm", "--preset", "digits", "--out", str(out), "--no-progress"]
    assert main([*common, "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["thinning"] == "L100"
    assert main([*common, "--steps", "2"]) == 2  # the folder holds a run: refuse without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*common, "--resume", "--thinning", "F"]) == 2
    assert main([*common, "--resume", "--steps", "3"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # each run logs its last step
    assert CASM.from_checkpoint(out / "casm.pt").info["step"] == 3
