"""Each evaluated batch's per-image values saved as it finishes (`OUT/batches/`), so that a stopped
`salmap evaluate` resumes where it was (`--resume`) and computes only the batches it had not
finished.

`run.json` holds what defines the evaluation (data, model, methods and their settings, batch
size, image count, seed, sanity images): a resumed run must match it. Each batch is one file
written atomically and read back with `weights_only=True`, allowing only the evaluation's own
result classes (never arbitrary objects)."""

from __future__ import annotations

import copy
import json
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from salmap.errors import SalmapError
from salmap.io import plain, remove_partials, write_atomically, write_json
from salmap.metrics import SanityResult

from .accumulators import ACCUMULATORS
from .runner import MethodResults, _BatchResults

FOLDER = "batches"
IDENTITY = "run.json"


class BatchStore:
    """The saved batches of one evaluation in `folder` (see the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.folder = out / FOLDER

    def exists(self) -> bool:
        """Whether a (stopped or finished) evaluation saved its batches here."""
        return (self.folder / IDENTITY).is_file()

    def start(self, identity: dict[str, Any], resume: bool) -> None:
        """Begin saving the batches of the evaluation `identity`; with `resume`, check that the
        saved one is the same evaluation, otherwise forget what was saved."""
        identity = plain(identity)
        if resume:
            if not self.exists():
                raise SalmapError(f"nothing to resume: {self.folder / IDENTITY} is missing; drop --resume")
            try:
                saved = json.loads((self.folder / IDENTITY).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            if not isinstance(saved, dict):
                raise SalmapError(
                    f"{self.folder / IDENTITY} is not an evaluation's description; drop --resume"
                )
            changed = sorted(
                key for key in identity.keys() | saved.keys() if identity.get(key) != saved.get(key)
            )
            if changed:
                raise SalmapError(
                    f"--resume goes on with the same evaluation, but {', '.join(changed)} differ from the "
                    f"one in {self.folder}; drop --resume and pass --overwrite to start again"
                )
            for leftover in self.folder.glob(".*.partial.pt"):
                leftover.unlink(missing_ok=True)
            return
        if self.folder.is_dir():
            for old in self.folder.glob("batch-*.pt"):
                old.unlink()
        write_json(self.folder / IDENTITY, identity)

    def _path(self, number: int) -> Path:
        return self.folder / f"batch-{number:06d}.pt"

    def save(self, part: _BatchResults) -> None:
        """Save one batch's results (atomically)."""
        saved = copy.copy(part)
        saved.methods = {}
        for name, result in part.methods.items():
            kept = MethodResults(accumulators=[copy.copy(found) for found in result.accumulators])
            kept.gallery = result.gallery
            for accumulator in kept.accumulators:
                accumulator.values = dict(accumulator.values)
            saved.methods[name] = kept
        write_atomically(self._path(part.number), lambda path: torch.save(saved, path))

    def load(self, number: int) -> _BatchResults | None:
        """Batch `number`'s saved results, or None when it was not saved or does not read back."""
        path = self._path(number)
        remove_partials(path)
        if not path.is_file():
            return None
        allowed = [_BatchResults, MethodResults, *ACCUMULATORS, SanityResult]
        try:
            with torch.serialization.safe_globals(allowed):
                part = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError):
            return None
        if not isinstance(part, _BatchResults) or part.number != number:
            return None
        for result in part.methods.values():
            for accumulator in result.accumulators:
                accumulator.values = defaultdict(list, accumulator.values)
        return part
