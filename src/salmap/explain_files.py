"""Explaining image files: maps and overlays written per image and method, a summary figure
and a results file. The command `salmap explain` is a thin layer over `explain_files`."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from salmap.errors import SalmapError
from salmap.explainers import logits_of
from salmap.figures import method_grid
from salmap.images import find_images, load_image, map_to_image, overlay
from salmap.methods import make_explainer
from salmap.models import LoadedModel

SUMMARY_ROWS = 16


@dataclass
class ExplainReport:
    """What `explain_files` did: the records written and the files it skipped."""

    records: list[dict] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    summary: Path | None = None
    results: Path | None = None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("salmap", "torch", "torchvision", "timm", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _unique_stems(paths: list[Path]) -> list[str]:
    stems: list[str] = []
    for path in paths:
        stem, number = path.stem, 2
        while stem in stems:
            stem, number = f"{path.stem}_{number}", number + 1
        stems.append(stem)
    return stems


def _write_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


def _readable(
    paths: list[Path], named: set[Path]
) -> tuple[list[tuple[Path, Image.Image]], list[tuple[Path, str]]]:
    images, skipped = [], []
    for path in paths:
        try:
            images.append((path, load_image(path)))
        except SalmapError as error:
            if path in named:
                raise
            skipped.append((path, str(error)))
    return images, skipped


def _predict(model: torch.nn.Module, x: torch.Tensor, target: int | None) -> tuple[list[int], list[float]]:
    """The class explained for each image (top-1, or `target`) and its softmax probability."""
    with torch.no_grad():
        probabilities = logits_of(model(x)).float().softmax(dim=-1)
    classes = (
        probabilities.argmax(dim=-1)
        if target is None
        else torch.full_like(probabilities[:, 0], target).long()
    )
    return classes.tolist(), probabilities.gather(1, classes[:, None])[:, 0].tolist()


def _write_maps(
    folder: Path, image: Image.Image, maps: dict[str, torch.Tensor], loaded: LoadedModel
) -> list[Image.Image]:
    """Write `<method>.npy` (the map at the image's size) and `<method>.png` (the overlay) for
    each method; return the overlays."""
    folder.mkdir(parents=True, exist_ok=True)
    overlays = []
    for method, saliency in maps.items():
        full = map_to_image(saliency, (image.height, image.width), loaded.resize, loaded.input_size)
        picture = overlay(image, full)
        _write_atomic(folder / f"{method}.npy", lambda p, a=full: np.save(p, a))
        _write_atomic(folder / f"{method}.png", lambda p, im=picture: im.save(p, format="PNG"))
        overlays.append(picture)
    return overlays


def explain_files(
    inputs: list[str | Path],
    loaded: LoadedModel,
    methods: list[str],
    out: str | Path,
    target: int | str | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    layer: str | None = None,
    samples: int = 50,
    scales: int = 8,
    checkpoints: dict[str, str | Path] | None = None,
    progress: bool = True,
) -> ExplainReport:
    """Explain every image with every method; write `out/<stem>/<method>.png` (overlay) and
    `.npy` (the map, float32, original image size), `out/summary.png` and `out/results.json`.

    `samples` is SmoothGrad's number of noisy copies, `scales` CAMERAS's number of input sizes,
    `checkpoints` the trained checkpoint of CASM and its Baseline.
    Files inside named directories that cannot be read are skipped and reported; a named file
    that cannot be read is an error. No existing file is replaced unless `overwrite` is set.
    """
    if batch_size < 1:
        raise SalmapError(f"batch size must be >= 1, got {batch_size}")
    paths = find_images(list(inputs))
    named = {Path(p) for p in inputs if not Path(p).is_dir()}
    images, skipped = _readable(paths, named)
    if not images:
        raise SalmapError("none of the images could be read")
    target_index = None if target is None else loaded.class_index(target)
    out = Path(out)
    stems = _unique_stems([path for path, _ in images])
    planned = [out / "summary.png", out / "results.json"]
    planned += [
        out / stem / f"{method}.{ext}" for stem in stems for method in methods for ext in ("png", "npy")
    ]
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        raise SalmapError(f"{existing[0]} exists; pass --overwrite to replace it")
    device = next(loaded.model.parameters()).device
    explainers = {
        name: make_explainer(
            name, loaded.model, layer or loaded.target_layer, samples, scales, (checkpoints or {}).get(name)
        )
        for name in methods
    }
    report = ExplainReport(skipped=skipped)
    summary_rows: list[tuple[Image.Image, list[Image.Image], str]] = []
    bar = tqdm(total=len(images), desc="explaining", unit="image", disable=not progress)
    try:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            x = torch.stack([loaded.preprocess(image) for _, image in chunk]).to(device)
            classes, scores = _predict(loaded.model, x, target_index)
            maps = {name: explainer(x, target_index) for name, explainer in explainers.items()}
            for i, (path, image) in enumerate(chunk):
                folder = out / stems[start + i]
                name = loaded.class_names[classes[i]]
                overlays = _write_maps(
                    folder, image, {m: batch_maps[i] for m, batch_maps in maps.items()}, loaded
                )
                report.records += [
                    {
                        "image": str(path),
                        "method": method,
                        "target": classes[i],
                        "target_name": name,
                        "score": round(scores[i], 6),
                        "map": str(folder / f"{method}.npy"),
                        "overlay": str(folder / f"{method}.png"),
                        "parameters": explainers[method].parameters(),
                    }
                    for method in maps
                ]
                if len(summary_rows) < SUMMARY_ROWS:
                    summary_rows.append((image, overlays, f"{path.name}\n{name} {scores[i]:.2f}"))
            bar.update(len(chunk))
    finally:
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    report.summary = out / "summary.png"
    pictures, cells, titles = zip(*summary_rows, strict=True)
    _write_atomic(report.summary, lambda p: method_grid(pictures, methods, cells, titles, p))
    report.results = out / "results.json"
    document = {
        "model": loaded.name,
        "versions": package_versions(),
        "skipped": [{"image": str(p), "reason": reason} for p, reason in skipped],
        "records": report.records,
    }
    _write_atomic(report.results, lambda p: p.write_text(json.dumps(document, indent=2, default=str)))
    return report
