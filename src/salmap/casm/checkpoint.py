"""CASM checkpoints: written atomically, read without executing code from the file.

`save` writes to a temporary file in the target's folder and renames it over the target
(`os.replace`), so a run killed at any moment leaves either the previous checkpoint or the new
one, never a torn file. `load` uses `torch.load(..., weights_only=True)`: only tensors and plain
containers are accepted, and a pickle payload that would build other objects is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from salmap.errors import SalmapError
from salmap.io import write_atomically

TRAINING_FORMAT = "salmap-casm-train-v1"
MAPPER_FORMAT = "salmap-casm-v1"


def save(state: dict[str, Any], path: str | Path) -> Path:
    """`torch.save(state)` to a temporary file next to `path`, then `os.replace` it onto `path`."""
    return write_atomically(path, lambda temporary: torch.save(state, temporary))


def load(path: str | Path, formats: tuple[str, ...] = (TRAINING_FORMAT, MAPPER_FORMAT)) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` onto the CPU and check its format tag."""
    path = Path(path)
    if not path.is_file():
        raise SalmapError(f"no CASM checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SalmapError(f"refusing to load {path}: not a plain weights file ({reason})") from None
    if not isinstance(state, dict) or state.get("format") not in formats:
        raise SalmapError(f"{path} is not a salmap CASM checkpoint ({' or '.join(formats)})")
    return state
