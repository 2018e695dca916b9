"""Planning an `explain` run: the images, their output folders, the class, the files to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salmap.errors import SalmapError
from salmap.images import load_image, output_name, scan_images
from salmap.io import check_inside, check_output_folder, refuse_existing
from salmap.models import LoadedModel

from .journal import JOURNAL

RESULTS = "results.json"
SUMMARY = "summary.png"
RUN_FILES = (SUMMARY, RESULTS, JOURNAL)


@dataclass(frozen=True)
class Plan:
    """The images to explain, the output folder name of each (unique, inside the output folder,
    never one of the run's own files), the class index to explain (None: each image's top-1
    class), and the folders inside the inputs that could not be read (with the reason)."""

    paths: list[Path]
    folders: list[str]
    target: int | None
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def files(self, out: Path, index: int, method: str) -> tuple[Path, Path]:
        """Image `index`'s map (`.npy`) and overlay (`.png`) for `method`."""
        folder = out / self.folders[index]
        return folder / f"{method}.npy", folder / f"{method}.png"

    def outputs(self, out: Path, methods: list[str]) -> list[Path]:
        """Every file the run writes: the run's own files and a map and an overlay per image and
        method."""
        planned = [out / name for name in RUN_FILES]
        planned += [
            path
            for index in range(len(self.paths))
            for method in methods
            for path in self.files(out, index, method)
        ]
        return planned


def unique_folders(paths: list[Path]) -> list[str]:
    """One folder name per image: its stem made safe (`salmap.images.output_name`), numbered from
    2 when it repeats another image's (ignoring case, for file systems that do) or names one of
    the run's own files."""
    folders: list[str] = []
    taken = {name.casefold() for name in RUN_FILES}
    for path in paths:
        stem = output_name(path.stem)
        folder, number = stem, 2
        while folder.casefold() in taken:
            folder, number = f"{stem}_{number}", number + 1
        folders.append(folder)
        taken.add(folder.casefold())
    return folders


def plan_run(
    inputs: list[str | Path],
    loaded: LoadedModel,
    methods: list[str],
    out: Path,
    target: int | str | None,
    overwrite: bool,
    resume: bool = False,
    max_pixels: int | None = None,
) -> Plan:
    """The plan for explaining `inputs`; an error for an output folder that cannot be written, a
    named file that cannot be read, an unknown class, a planned file that would land outside
    `out`, or one that exists without `overwrite` (with `resume` the folder is the run's own)."""
    if overwrite and resume:
        raise SalmapError("--resume keeps the finished maps and --overwrite replaces them: choose one")
    if max_pixels is not None and max_pixels < 1:
        raise SalmapError(f"--max-pixels must be >= 1, got {max_pixels}")
    check_output_folder(out)
    paths, unreadable = scan_images(list(inputs))
    for path in {Path(p) for p in inputs if not Path(p).is_dir()}:
        load_image(path, max_pixels)
    plan = Plan(
        paths, unique_folders(paths), None if target is None else loaded.class_index(target), unreadable
    )
    outputs = plan.outputs(out, methods)
    check_inside(out, outputs)
    if not resume:
        refuse_existing(outputs, overwrite)
    return plan
