"""Writing output files safely: never over a user's file without `--overwrite`, never a torn file,
never outside the output folder.

Every file is written to a hidden temporary file in its own folder and renamed over its path
(`os.replace`, atomic on one file system), so a run killed at any moment leaves the old file or
the new one; on any error the temporary file is removed, and a failed write (a full disk, a
read-only folder) is one clear error naming the file.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from salmap.errors import SalmapError


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """A clear error naming the first of `paths` that exists (a dangling link counts), unless
    `overwrite`."""
    if overwrite:
        return
    for path in paths:
        if os.path.lexists(path):
            raise SalmapError(f"{path} exists; pass --overwrite to replace it")


def check_output_folder(folder: str | Path) -> Path:
    """Check, before any work, that `folder` is a folder that can be written or can be made: not
    a file, not under a file, not read-only. Returns it as a `Path`."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise SalmapError(f"the output folder {folder} is a file; choose another --out")
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SalmapError(f"cannot make the output folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SalmapError(f"cannot write in {existing}: it is read-only or not ours; choose another --out")
    return folder


def check_output_file(path: str | Path) -> Path:
    """Check, before any work, that the file `path` can be written: not a folder, in a folder
    that can be written or made (see `check_output_folder`)."""
    path = Path(path)
    if path.is_dir():
        raise SalmapError(f"{path} is a folder; give a file name")
    check_output_folder(path.parent)
    return path


def check_inside(folder: Path, paths: Iterable[Path]) -> None:
    """An error when any of `paths`, with symbolic links followed, lies outside `folder`."""
    root = folder.resolve()
    for path in paths:
        if not path.resolve().is_relative_to(root):
            raise SalmapError(f"{path} leads outside {folder} (a symbolic link?); refusing to write there")


def _size(count: float) -> str:
    for unit in ("bytes", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _write_error(path: Path, error: OSError, size: int | None, free: int | None) -> SalmapError:
    """The one-line error for a failed write of `path`. A full disk (the system says so, or less
    space was left than the file needs: NumPy reports a short write without the system's error
    number) gives the space needed and the space left."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT) or (
        size is not None and free is not None and free < size
    )
    if full:
        needed = f"{_size(size)} needed, " if size is not None else ""
        left = f"{_size(free)} free" if free is not None else "free space unknown"
        return SalmapError(f"no space left on the device to write {path} ({needed}{left}); free some space")
    return SalmapError(f"cannot write {path}: {error.strerror or error}")


def write_atomically(path: str | Path, write: Callable[[Path], Any], size: int | None = None) -> Path:
    """`write(temporary)` to a temporary file next to `path` (hidden, with the same suffix, so
    writers that choose the format by the suffix work), then rename it onto `path`. `size` (bytes,
    when known) goes into the message of a full disk. On any error the temporary file is removed;
    a full disk or another `OSError` becomes a `SalmapError` naming `path`."""
    path = Path(path)
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent
        )
        os.close(handle)
        temporary = Path(name)
        write(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException as error:
        free = _free(path.parent)
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(path, error, size, free) from None
        raise
    return path


def remove_partials(path: Path) -> None:
    """Remove the temporary files that writes of `path` left behind when a run was killed."""
    pattern = f".{glob.escape(path.stem)}.*.partial{glob.escape(path.suffix)}"
    for leftover in path.parent.glob(pattern):
        leftover.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) atomically."""
    data = text.encode("utf-8")
    return write_atomically(path, lambda temporary: temporary.write_bytes(data), size=len(data))


def plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, other objects strings)."""
    return json.loads(json.dumps(value, default=str))


def write_json(path: str | Path, document: Any) -> Path:
    """Write `document` as indented JSON atomically (NaN allowed; other objects as strings)."""
    return write_text(path, json.dumps(document, indent=2, default=str) + "\n")


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """Write a NumPy array (`.npy`) atomically."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.save(handle, array)

    return write_atomically(path, write, size=array.nbytes + 128)


def encode_png(picture: Image.Image) -> bytes:
    """An RGB picture as PNG the fast way: zlib level 1 with Huffman-only coding, which takes
    about 60% of the time of Pillow's fastest level for a file of the same size."""
    pixels = np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])
    options = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    ]
    ok, encoded = cv2.imencode(".png", pixels, options)
    if not ok:
        raise SalmapError("could not encode a picture as PNG")
    return encoded.tobytes()


def save_png(path: str | Path, picture: Image.Image) -> Path:
    """Write an RGB picture as PNG (see `encode_png`) atomically."""
    data = encode_png(picture)
    return write_atomically(path, lambda temporary: temporary.write_bytes(data), size=len(data))
