"""CASM checkpoints: written atomically, read without executing code from the file.

`save` writes to a temporary file in the target's folder and renames it over the target
(`os.replace`), so a run killed at any moment leaves either the previous checkpoint or the new
one, never a torn file. `load` uses `torch.load(..., weights_only=True)`: only tensors and plain
containers are accepted, and a pickle payload that would build other objects is refused.
"""

from __future__ import annotations

import pickle
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
    """Read a checkpoint with `weights_only=True` onto the CPU and check its format tag. A file
    that holds other Python objects is refused, never loaded another way."""
    path = Path(path)
    if not path.is_file():
        raise SalmapError(f"no CASM checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SalmapError(
            f"refusing {path}: it is not a salmap checkpoint (it holds Python objects other than "
            "tensors, which salmap never loads)"
        ) from None
    except Exception:
        raise SalmapError(
            f"refusing {path}: it is not a salmap checkpoint (unreadable: truncated or corrupt)"
        ) from None
    if not isinstance(state, dict) or state.get("format") not in formats:
        raise SalmapError(f"{path} is not a salmap CASM checkpoint ({' or '.join(formats)})")
    return state


def require(state: dict[str, Any], path: str | Path, keys: tuple[str, ...]) -> None:
    """An error naming the file unless `state` holds every one of `keys`."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise SalmapError(f"{path} is not a complete salmap CASM checkpoint: it has no {', '.join(missing)}")


def state_dict_problem(error: Exception) -> str:
    """The first problem that `load_state_dict` reports, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = next((line for line in lines if not line.startswith("Error(s) in loading")), None)
    return (found or type(error).__name__).rstrip(".")
