"""The record of an `explain` run as it goes: `records.jsonl` in the output folder, one line per
image appended once the image's files are in place, so that a run killed at any moment keeps
what it finished and `--resume` goes on from there.

The first line names the file's kind; every other line holds one image: its path as given, its
resolved path, size and modification time, its output folder, the model, the class asked for,
and per method the record (with the choices made: layer, output field) and the method's settings
before the run (what a resumed run must match). A later line for the same image and method
replaces an earlier one; a line torn by a kill is ignored.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from salmap.errors import SalmapError
from salmap.io import write_text

from .records import MapRecord

JOURNAL = "records.jsonl"
KIND = "salmap explain records"


def stamp(path: Path) -> list[int]:
    """An input file's size and modification time (ns): a changed file is explained again."""
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


@dataclass
class KeptMaps:
    """What a resumed run keeps: per image index, the records of every method, and per method
    the choices the earlier run made."""

    records: dict[int, dict[str, MapRecord]] = field(default_factory=dict)
    choices: dict[str, dict[str, str]] = field(default_factory=dict)

    def count(self) -> int:
        """The number of (image, method) maps kept."""
        return sum(len(methods) for methods in self.records.values())


class Journal:
    """Appends image lines to `records.jsonl` (whole lines, one `write` each, from any thread or
    process) and reads them back."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL
        self.lock = threading.Lock()

    def start(self) -> None:
        """Begin a new record (any earlier one is replaced)."""
        write_text(self.path, json.dumps({"kind": KIND, "version": 1}) + "\n")

    def mend(self) -> None:
        """End a line that a kill cut short, so that the next line starts on its own."""
        with open(self.path, "rb+") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                return
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")

    def append(self, line: dict[str, Any]) -> None:
        """Append one image's line."""
        data = (json.dumps(line, default=str) + "\n").encode("utf-8")
        with self.lock:
            handle = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(handle, data)
            except OSError as error:
                raise SalmapError(f"cannot add to {self.path}: {error.strerror}") from None
            finally:
                os.close(handle)

    def lines(self) -> list[dict[str, Any]]:
        """The image lines, in order; an error when the file is missing or is not a record."""
        if not self.path.is_file():
            raise SalmapError(f"nothing to resume: {self.path} is missing; drop --resume to start a run")
        text = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        try:
            header = json.loads(text[0]) if text else {}
        except json.JSONDecodeError:
            header = {}
        if not isinstance(header, dict) or header.get("kind") != KIND:
            raise SalmapError(
                f"{self.path} is not a salmap explain record; drop --resume or choose another --out"
            )
        found = []
        for raw in text[1:]:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict) and isinstance(line.get("maps"), dict):
                found.append(line)
        return found


def image_line(
    path: Path,
    folder: str,
    model: str,
    target: int | None,
    records: list[MapRecord],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The journal line of one image whose `records` are written."""
    return {
        "image": str(path),
        "source": str(path.resolve()),
        "stamp": stamp(path),
        "folder": folder,
        "model": model,
        "target": target,
        "maps": {
            record.method: {"record": record.to_json(), "settings": settings[record.method]}
            for record in records
        },
    }


def _files_load(npy: Path, png: Path) -> bool:
    """Whether a map and its overlay exist and read back: a 2-D float32 array, and a picture of
    the same size (headers only)."""
    try:
        saliency = np.load(npy, mmap_mode="r")
        with Image.open(png) as picture:
            size = picture.size
    except (OSError, ValueError):
        return False
    return saliency.dtype == np.float32 and saliency.ndim == 2 and size == saliency.shape[::-1]


def kept_maps(
    journal: Journal,
    paths: list[Path],
    folders: list[str],
    out: Path,
    model: str,
    target: int | None,
    settings: dict[str, Any],
) -> KeptMaps:
    """The images of an earlier run in `out` to keep: those of the same input file (unchanged), in
    the same folder, from the same model and class asked for, with every method of `settings`
    recorded with those settings and files that read back. `settings` are this run's, per
    method, as `plain` JSON."""
    wanted = {
        (str(path.resolve()), folder): index
        for index, (path, folder) in enumerate(zip(paths, folders, strict=True))
    }
    candidates: dict[int, dict[str, dict[str, Any]]] = {}
    for line in journal.lines():
        index = wanted.get((line.get("source"), line.get("folder")))
        if index is None or line.get("model") != model or line.get("target") != target:
            continue
        if line.get("stamp") != stamp(paths[index]):
            continue
        for method, entry in line["maps"].items():
            if method in settings and entry.get("settings") == settings[method]:
                candidates.setdefault(index, {})[method] = entry["record"]
    kept = KeptMaps()
    for index, methods in candidates.items():
        folder = out / folders[index]
        found = {}
        for method, record in methods.items():
            npy, png = folder / f"{method}.npy", folder / f"{method}.png"
            try:
                found[method] = MapRecord(
                    **{**record, "image": str(paths[index]), "map": str(npy), "overlay": str(png)}
                )
            except TypeError:
                continue
            if not _files_load(npy, png):
                del found[method]
        if len(found) == len(settings):
            kept.records[index] = found
            kept.choices.update({method: record.choices for method, record in found.items()})
    return kept
