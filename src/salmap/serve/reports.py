"""The output folders of `salmap evaluate` and `salmap benchmark` shown on the page: each
`metrics.json` under the folder given with `--report` (its tables) and the figures beside it.

The folder is read once, when the page starts: the figures it may serve are listed then and
reached by number, so no request names a path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salmap.errors import SalmapError

FIGURES = ("gallery.png", "curves.png", "sanity.png")
DEPTH = 3


@dataclass
class Report:
    """One evaluation: its folder (relative to the report folder), its `metrics.json` and the
    numbers of its figures."""

    folder: str
    metrics: dict[str, Any]
    figures: dict[str, int] = field(default_factory=dict)


@dataclass
class ReportFolder:
    """Every evaluation found under one folder, and the figure files by number."""

    root: Path
    reports: list[Report]
    files: list[Path]

    def figure(self, number: int) -> Path | None:
        return self.files[number] if 0 <= number < len(self.files) else None


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, links resolved, lies inside `root`."""
    try:
        path.resolve(strict=True).relative_to(root)
    except (OSError, ValueError):
        return False
    return True


def read_reports(folder: str | Path) -> ReportFolder:
    """Every `metrics.json` in `folder` and its subfolders (at most `DEPTH` levels down) with
    its figures; a clear error when there is none or one cannot be read."""
    root = Path(folder)
    if not root.is_dir():
        raise SalmapError(f"--report {folder}: no such folder")
    root = root.resolve()
    found = sorted(
        path
        for path in root.rglob("metrics.json")
        if len(path.relative_to(root).parts) <= DEPTH + 1 and _inside(path, root)
    )
    if not found:
        raise SalmapError(f"--report {folder}: no metrics.json of `salmap evaluate` or `benchmark` in it")
    reports, files = [], []
    for path in found:
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SalmapError(f"cannot read {path}: {error}") from None
        if not isinstance(metrics, dict) or not isinstance(metrics.get("methods"), dict):
            raise SalmapError(f"{path} is not a metrics.json of `salmap evaluate` (no methods)")
        report = Report(path.parent.relative_to(root).as_posix() or ".", metrics)
        for name in FIGURES:
            figure = path.parent / name
            if figure.is_file() and _inside(figure, root):
                report.figures[name] = len(files)
                files.append(figure.resolve())
        reports.append(report)
    return ReportFolder(root, reports, files)
