"""benchmarks/casm_paper_speed.py on the CPU with tiny settings: it trains, times and converts."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_paper_speed_script_reports_images_per_second_and_device_hours(tmp_path):
    out = tmp_path / "speed.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "casm_paper_speed.py"), "--device", "cpu"]
    command += ["--seconds", "0.2", "--warmup", "1", "--batch-size", "2", "--images", "4", "--workers", "0"]
    command += ["--image-size", "64", "--model", "resnet18", "--out", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(out.read_text())
    assert result["paper_schedule_images"] == 60 * 1_281_167 // 5  # 60 epochs of 20% of ImageNet train
    assert result["classifier_update"] == "two_steps" and result["batch_size"] == 2
    for rate, hours in (
        ("training_loop", "paper_schedule_device_hours"),
        ("steps_only", "paper_schedule_device_hours_steps_only"),
    ):
        speed = result[rate]["images_per_second"]
        assert speed > 0 and result[rate]["steps"] >= 1
        assert abs(result[hours] - result["paper_schedule_images"] / speed / 3600) < 0.01
    assert "device-hours" in completed.stdout
