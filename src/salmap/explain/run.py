"""Explaining image files: maps and overlays written per image and method, a summary figure and
a results file. The command `salmap explain` is a thin layer over `explain_files`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from salmap import distributed
from salmap.errors import SalmapError
from salmap.explainers import Explainer
from salmap.figures import method_grid
from salmap.images import load_image
from salmap.io import write_atomically, write_json
from salmap.models import LoadedModel

from .plan import Plan, plan_run
from .records import MapRecord, results_document
from .writer import MapWriter, SummaryRow

SUMMARY_ROWS = 16


@dataclass
class ExplainReport:
    """What `explain_files` did: the records written and the files it skipped."""

    records: list[MapRecord] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    summary: Path | None = None
    results: Path | None = None


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


def explain_batch(
    explainers: dict[str, Explainer], model: torch.nn.Module, x: torch.Tensor, target: int | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every method's maps (on the CPU, in the order of `explainers`) and `model`'s logits, taken
    from the first method that explains `model` itself (the trained mappers carry their own
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


def prediction(logits: torch.Tensor, target: int | None) -> tuple[list[int], list[float]]:
    """The class explained for each image (top-1, or `target`) and its softmax probability."""
    probabilities = logits.float().softmax(dim=-1)
    classes = (
        probabilities.argmax(dim=-1)
        if target is None
        else torch.full_like(probabilities[:, 0], target).long()
    )
    return classes.tolist(), probabilities.gather(1, classes[:, None])[:, 0].tolist()


@dataclass
class _Progress:
    """What this process has done: records and skipped files by image index, summary rows."""

    records: dict[int, list[MapRecord]] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    summary: dict[int, SummaryRow] = field(default_factory=dict)

    def merge(self, other: _Progress) -> None:
        self.records.update(other.records)
        self.skipped.update(other.skipped)
        self.summary.update(other.summary)


def _explain_shard(
    plan: Plan,
    loaded: LoadedModel,
    explainers: dict[str, Explainer],
    out: Path,
    batch_size: int,
    progress: bool,
) -> _Progress:
    """Explain this process's batches; write their files while the next batches run."""
    batches = [
        range(start, min(start + batch_size, len(plan.paths)))
        for start in range(0, len(plan.paths), batch_size)
    ]
    mine = [batches[number] for number in distributed.shard(len(batches))]
    count = sum(len(batch) for batch in mine)
    workers, threads = pipeline_threads()
    loader = DataLoader(
        ImageFiles(plan.paths, loaded.preprocess),
        batch_sampler=mine,
        num_workers=workers if count > batch_size else 0,
        collate_fn=list,
    )
    device = next(loaded.model.parameters()).device
    done = _Progress()
    writer = MapWriter(loaded, threads)
    bar = tqdm(total=count, desc="explaining", unit="image", disable=not progress or distributed.rank() != 0)
    try:
        for items in loader:
            done.skipped.update((index, reason) for index, _, _, reason in items if reason)
            batch = [item for item in items if item[3] is None]
            bar.update(len(items) - len(batch))
            if not batch:
                continue
            x = torch.stack([tensor for _, tensor, _, _ in batch]).to(device)
            maps, logits = explain_batch(explainers, loaded.model, x, plan.target)
            classes, scores = prediction(logits, plan.target)
            for i, (index, _, pixels, _) in enumerate(batch):
                folder = out / plan.folders[index]
                name = loaded.class_names[classes[i]]
                title = f"{plan.paths[index].name}\n{name} {scores[i]:.2f}"
                own = {method: method_maps[i] for method, method_maps in maps.items()}
                writer.submit(index, folder, pixels, own, title, keep=index < SUMMARY_ROWS)
                done.records[index] = [
                    MapRecord(
                        image=str(plan.paths[index]),
                        method=method,
                        target=classes[i],
                        target_name=name,
                        score=round(scores[i], 6),
                        map=str(folder / f"{method}.npy"),
                        overlay=str(folder / f"{method}.png"),
                        settings=explainers[method].settings(),
                        choices=explainers[method].choices(),
                    )
                    for method in maps
                ]
            bar.update(len(batch))
        done.summary = writer.finish()
    finally:
        writer.close()
        bar.close()
    return done


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
    methods = list(explainers)
    plan = distributed.checked(lambda: plan_run(inputs, loaded, methods, out, target, overwrite))
    if on_start is not None:
        on_start()
    done = _explain_shard(plan, loaded, explainers, out, batch_size, progress)
    parts = distributed.gather(done)
    for part in (parts or [])[1:]:
        done.merge(part)
    report = ExplainReport(
        records=[record for index in sorted(done.records) for record in done.records[index]],
        skipped=[(plan.paths[index], reason) for index, reason in sorted(done.skipped.items())],
    )
    if parts is None:
        return report
    if not done.records:
        raise SalmapError("none of the images could be read")
    pictures, cells, titles = zip(
        *[done.summary[index] for index in sorted(done.summary)][:SUMMARY_ROWS], strict=True
    )
    report.summary = write_atomically(
        out / "summary.png", lambda p: method_grid(pictures, methods, cells, titles, p)
    )
    choices = {name: explainer.choices() for name, explainer in explainers.items()}
    report.results = write_json(
        out / "results.json", results_document(loaded.name, report.records, report.skipped, choices)
    )
    return report
