"""What `salmap explain` records for each (image, method): `results.json`'s entries."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MapRecord:
    """One map written: the image, the method, the class explained (index, name and softmax
    probability), the files, the method's settings and the choices made for the user (layer,
    output field)."""

    image: str
    method: str
    target: int
    target_name: str
    score: float
    map: str
    overlay: str
    settings: dict[str, Any]
    choices: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object."""
        return asdict(self)


def package_versions() -> dict[str, str]:
    """Python's and the main packages' versions, written next to the results."""
    versions = {"python": platform.python_version()}
    for package in ("salmap", "torch", "torchvision", "timm", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def results_document(
    model: str, records: list[MapRecord], skipped: list[tuple[Path, str]], choices: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """`results.json`: the model, the versions, the files skipped (with the reason), the choices
    made for the user per method (layer, output field), and every record."""
    return {
        "model": model,
        "versions": package_versions(),
        "choices": choices,
        "skipped": [{"image": str(path), "reason": reason} for path, reason in skipped],
        "records": [record.to_json() for record in records],
    }
