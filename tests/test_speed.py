"""The speed benchmark's measuring parts (timings themselves are not asserted)."""

from __future__ import annotations

import mmap
import time

import pytest
import torch

from salmap.cli import main
from salmap.speed import measure, peak_memory


def test_measure_gives_one_median_per_call() -> None:
    calls = {"small": lambda: torch.ones(10).sum(), "large": lambda: torch.ones(2_000_000).cumsum(0)}
    timed = measure(calls, torch.device("cpu"), repeats=3)
    assert set(timed) == {"small", "large"} and all(value > 0 for value in timed.values())


def test_peak_memory_sees_a_large_allocation() -> None:
    def allocate() -> None:
        block = mmap.mmap(-1, 64 * 2**20)  # 64 MiB of fresh pages, whatever the heap holds
        block.write(b"\1" * len(block))
        time.sleep(0.05)
        block.close()

    assert peak_memory(allocate, torch.device("cpu")) > 32 * 2**20


def test_bad_arguments_exit_2(capsys) -> None:
    assert main(["bench", "--models", "vgg"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["bench", "--batches", "one"]) == 2
    assert "--batches" in capsys.readouterr().err


def test_a_failing_peer_is_left_out(capsys) -> None:
    def fails() -> None:
        raise TypeError("Got unsupported ScalarType BFloat16")

    calls = {"fine": lambda: 1, "broken": fails}
    assert set(measure(calls, torch.device("cpu"), repeats=1, optional={"broken"})) == {"fine"}
    assert "broken fails here" in capsys.readouterr().out
    with pytest.raises(TypeError):
        measure(calls, torch.device("cpu"), repeats=1)
