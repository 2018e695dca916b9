"""Planning an `explain` run: the images, their output folders, the class, the files to write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from salmap.images import find_images, load_image
from salmap.io import refuse_existing
from salmap.models import LoadedModel

RUN_FILES = ("summary.png", "results.json")


@dataclass(frozen=True)
class Plan:
    """The images to explain, the output folder name of each (unique), and the class index to
    explain (None: each image's top-1 class)."""

    paths: list[Path]
    folders: list[str]
    target: int | None

    def outputs(self, out: Path, methods: list[str]) -> list[Path]:
        """Every file the run writes: the run's own files and a map and an overlay per image and
        method."""
        planned = [out / name for name in RUN_FILES]
        planned += [
            out / folder / f"{method}.{ext}"
            for folder in self.folders
            for method in methods
            for ext in ("png", "npy")
        ]
        return planned


def unique_folders(paths: list[Path]) -> list[str]:
    """One folder name per image: its stem, numbered from 2 when stems repeat."""
    folders: list[str] = []
    taken: set[str] = set()
    for path in paths:
        folder, number = path.stem, 2
        while folder in taken:
            folder, number = f"{path.stem}_{number}", number + 1
        folders.append(folder)
        taken.add(folder)
    return folders


def plan_run(
    inputs: list[str | Path],
    loaded: LoadedModel,
    methods: list[str],
    out: Path,
    target: int | str | None,
    overwrite: bool,
) -> Plan:
    """The plan for explaining `inputs`; an error for a named file that cannot be read, an unknown
    class, or an output file that exists without `overwrite`."""
    paths = find_images(list(inputs))
    for path in {Path(p) for p in inputs if not Path(p).is_dir()}:
        load_image(path)
    plan = Plan(paths, unique_folders(paths), None if target is None else loaded.class_index(target))
    refuse_existing(plan.outputs(out, methods), overwrite)
    return plan
