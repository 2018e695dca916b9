"""Explaining image files: maps and overlays written per image and method, a summary figure
and a results file. The command `salmap explain` is a thin layer over `explain_files`."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from salmap import distributed
from salmap.errors import SalmapError
from salmap.explainers import Explainer
from salmap.figures import method_grid
from salmap.images import find_images, load_image, map_to_image, overlay
from salmap.models import LoadedModel

SUMMARY_ROWS = 16
SUMMARY_PIXELS = 440


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
    taken: set[str] = set()
    for path in paths:
        stem, number = path.stem, 2
        while stem in taken:
            stem, number = f"{path.stem}_{number}", number + 1
        stems.append(stem)
        taken.add(stem)
    return stems


def _write_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


class ImageFiles(Dataset):
    """Image files decoded and preprocessed (in loader workers): items are (index, model input,
    RGB pixels, None), or (index, None, None, reason) for a file that cannot be read."""

    def __init__(self, paths: list[Path], preprocess) -> None:
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, np.ndarray | None, str | None]:
        try:
            image = load_image(self.paths[index])
        except SalmapError as error:
            return index, None, None, str(error)
        return index, self.preprocess(image), np.asarray(image), None


def pipeline_threads() -> tuple[int, int]:
    """Loader processes and writer threads for this process's share of the cores (shared with the
    other processes of a `torchrun` job on this machine): writing an overlay and a map costs about
    seven times decoding an image, so most cores write."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    workers = min(4, max(1, cores // 8))
    return workers, max(2, cores - workers - 1)


def _explain_batch(
    explainers: dict[str, Explainer], model: torch.nn.Module, x: torch.Tensor, target: int | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every method's maps (on the CPU, in the order of `explainers`) and `model`'s logits, taken
    from the first method that explains `model` itself (CASM and its Baseline carry their own
    classifier); one forward pass of its own when there is none."""
    lead = next((name for name, explainer in explainers.items() if explainer.model is model), None)
    maps: dict[str, torch.Tensor] = {}
    if lead is None:
        with torch.no_grad():
            logits = next(iter(explainers.values())).read_logits(model(x))
    else:
        maps[lead], logits, _ = explainers[lead].with_prediction(x, target)
    for name, explainer in explainers.items():
        if name not in maps:
            maps[name] = explainer(x, target)
    return {name: maps[name].cpu() for name in explainers}, logits


def _prediction(logits: torch.Tensor, target: int | None) -> tuple[list[int], list[float]]:
    """The class explained for each image (top-1, or `target`) and its softmax probability."""
    probabilities = logits.float().softmax(dim=-1)
    classes = (
        probabilities.argmax(dim=-1)
        if target is None
        else torch.full_like(probabilities[:, 0], target).long()
    )
    return classes.tolist(), probabilities.gather(1, classes[:, None])[:, 0].tolist()


def save_png(picture: Image.Image, path: Path) -> None:
    """Write an RGB picture as PNG the fast way: zlib level 1 with Huffman-only coding, which
    takes about 60% of the time of Pillow's fastest level for a file of the same size."""
    pixels = np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])
    options = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    ]
    ok, encoded = cv2.imencode(".png", pixels, options)
    if not ok:
        raise SalmapError(f"could not encode {path} as PNG")
    encoded.tofile(path)


def _write_maps(
    folder: Path, pixels: np.ndarray, maps: dict[str, torch.Tensor], loaded: LoadedModel, keep: bool
) -> tuple[Image.Image, list[Image.Image]] | None:
    """Write `<method>.npy` (the map at the image's size) and `<method>.png` (the overlay) for
    each method; return the image and its overlays when `keep`, at most `SUMMARY_PIXELS` on a
    side (for the summary figure, whose cells are smaller)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    overlays = []
    for method, saliency in maps.items():
        full = map_to_image(saliency, (image.height, image.width), loaded.resize, loaded.input_size)
        picture = overlay(image, full)
        _write_atomic(folder / f"{method}.npy", lambda p, a=full: np.save(p, a))
        _write_atomic(folder / f"{method}.png", lambda p, im=picture: save_png(im, p))
        if keep:
            picture.thumbnail((SUMMARY_PIXELS, SUMMARY_PIXELS))
            overlays.append(picture)
    if keep:
        image.thumbnail((SUMMARY_PIXELS, SUMMARY_PIXELS))
    return (image, overlays) if keep else None


def _plan(
    inputs: list[str | Path],
    loaded: LoadedModel,
    methods: list[str],
    out: Path,
    target: int | str | None,
    overwrite: bool,
) -> tuple[list[Path], list[str], int | None]:
    """The images, their output folder names and the class index to explain; an error for a named
    file that cannot be read or an output file that exists without `overwrite`."""
    paths = find_images(list(inputs))
    for path in {Path(p) for p in inputs if not Path(p).is_dir()}:
        load_image(path)
    target_index = None if target is None else loaded.class_index(target)
    stems = _unique_stems(paths)
    planned = [out / "summary.png", out / "results.json"]
    planned += [
        out / stem / f"{method}.{ext}" for stem in stems for method in methods for ext in ("png", "npy")
    ]
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        raise SalmapError(f"{existing[0]} exists; pass --overwrite to replace it")
    return paths, stems, target_index


def explain_files(
    inputs: list[str | Path],
    loaded: LoadedModel,
    explainers: dict[str, Explainer],
    out: str | Path,
    target: int | str | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    on_start: Callable[[], None] | None = None,
) -> ExplainReport:
    """Explain every image with every explainer (by method name); write `out/<stem>/<method>.png`
    (overlay) and `.npy` (the map, float32, original image size), `out/summary.png` and
    `out/results.json`.
    Files inside named directories that cannot be read are skipped and reported; a named file
    that cannot be read is an error. No existing file is replaced unless `overwrite` is set.
    Images are decoded by loader workers while the model runs, and files are written by a pool
    of threads (writing costs several times more than decoding), so neither waits for the other;
    at most a few batches wait to be written, so memory stays bounded on any number of images.
    `on_start` is called once the inputs and outputs are checked, before any image is explained.

    Under `torchrun` (a joined process group) rank r explains batches r, r + N, ... and writes
    their files; rank 0 gathers the records and the summary rows and writes `summary.png` and
    `results.json`, the same as one process would. The other ranks return their own records.
    """
    if batch_size < 1:
        raise SalmapError(f"batch size must be >= 1, got {batch_size}")
    out = Path(out)
    paths, stems, target_index = distributed.checked(
        lambda: _plan(inputs, loaded, list(explainers), out, target, overwrite)
    )
    if on_start is not None:
        on_start()
    methods = list(explainers)
    device = next(loaded.model.parameters()).device
    batches = [
        range(start, min(start + batch_size, len(paths))) for start in range(0, len(paths), batch_size)
    ]
    mine = [batches[number] for number in distributed.shard(len(batches))]
    count = sum(len(batch) for batch in mine)
    workers, writers = pipeline_threads()
    loader = DataLoader(
        ImageFiles(paths, loaded.preprocess),
        batch_sampler=mine,
        num_workers=workers if count > batch_size else 0,
        collate_fn=list,
    )
    report = ExplainReport()
    records: dict[int, list[dict]] = {}
    skipped: dict[int, str] = {}
    summary: dict[int, tuple[Image.Image, list[Image.Image], str]] = {}
    writes: list[tuple[int, str, Future]] = []
    bar = tqdm(total=count, desc="explaining", unit="image", disable=not progress or distributed.rank() != 0)
    written = 0
    with ThreadPoolExecutor(max_workers=writers) as writer:
        try:
            for items in loader:
                skipped.update((index, reason) for index, _, _, reason in items if reason)
                batch = [item for item in items if item[3] is None]
                bar.update(len(items) - len(batch))
                if not batch:
                    continue
                x = torch.stack([tensor for _, tensor, _, _ in batch]).to(device)
                maps, logits = _explain_batch(explainers, loaded.model, x, target_index)
                classes, scores = _prediction(logits, target_index)
                for i, (index, _, pixels, _) in enumerate(batch):
                    folder = out / stems[index]
                    name = loaded.class_names[classes[i]]
                    keep = index < SUMMARY_ROWS
                    future = writer.submit(
                        _write_maps,
                        folder,
                        pixels,
                        {m: batch_maps[i] for m, batch_maps in maps.items()},
                        loaded,
                        keep,
                    )
                    writes.append((index, f"{paths[index].name}\n{name} {scores[i]:.2f}", future))
                    while len(writes) - written > 4 * writers:
                        writes[written][2].result()
                        written += 1
                    records[index] = [
                        {
                            "image": str(paths[index]),
                            "method": method,
                            "target": classes[i],
                            "target_name": name,
                            "score": round(scores[i], 6),
                            "map": str(folder / f"{method}.npy"),
                            "overlay": str(folder / f"{method}.png"),
                            "settings": explainers[method].settings(),
                            "choices": explainers[method].choices(),
                        }
                        for method in maps
                    ]
                bar.update(len(batch))
            for index, title, future in writes:
                kept = future.result()
                if kept is not None:
                    summary[index] = (*kept, title)
        finally:
            bar.close()
    parts = distributed.gather((records, skipped, summary))
    for part_records, part_skipped, part_summary in (parts or [])[1:]:
        records.update(part_records)
        skipped.update(part_skipped)
        summary.update(part_summary)
    report.records = [record for index in sorted(records) for record in records[index]]
    report.skipped = [(paths[index], reason) for index, reason in sorted(skipped.items())]
    if parts is None:
        return report
    if not records:
        raise SalmapError("none of the images could be read")
    summary_rows = [summary[index] for index in sorted(summary)][:SUMMARY_ROWS]
    out.mkdir(parents=True, exist_ok=True)
    report.summary = out / "summary.png"
    pictures, cells, titles = zip(*summary_rows, strict=True)
    _write_atomic(report.summary, lambda p: method_grid(pictures, methods, cells, titles, p))
    report.results = out / "results.json"
    document = {
        "model": loaded.name,
        "versions": package_versions(),
        "skipped": [{"image": str(p), "reason": reason} for p, reason in report.skipped],
        "records": report.records,
    }
    _write_atomic(report.results, lambda p: p.write_text(json.dumps(document, indent=2, default=str)))
    return report
