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
from salmap.io import plain, remove_partials, write_atomically, write_json
from salmap.models import LoadedModel
from salmap.workers import exit_with_parent

from .journal import Journal, KeptMaps, image_line, kept_maps
from .plan import RESULTS, SUMMARY, Plan, plan_run
from .records import MapRecord, results_document
from .writer import MapWriter, SummaryRow, summary_row

SUMMARY_ROWS = 16


@dataclass
class ExplainReport:
    """What `explain_files` did: the records written, the files it skipped, and how many maps
    it kept from an earlier run (`resume`)."""

    records: list[MapRecord] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    summary: Path | None = None
    results: Path | None = None
    kept: int = 0


class ImageFiles(Dataset):
    """Image files decoded and preprocessed (in loader workers): items are (index, model input,
    RGB pixels, None), or (index, None, None, reason) for a file that cannot be read."""

    def __init__(self, paths: list[Path], preprocess, max_pixels: int | None = None) -> None:
        self.paths = paths
        self.preprocess = preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, np.ndarray | None, str | None]:
        try:
            image = load_image(self.paths[index], self.max_pixels)
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


@dataclass(frozen=True)
class _Run:
    """One run's fixed parts: the plan, the model, the explainers, the output folder, the
    record being kept, each method's settings before the run, and the maps kept from before."""

    plan: Plan
    loaded: LoadedModel
    explainers: dict[str, Explainer]
    out: Path
    journal: Journal
    settings: dict[str, dict]
    kept: KeptMaps
    max_pixels: int | None = None

    def to_explain(self, index: int) -> bool:
        """Whether image `index` still needs its maps (none kept from an earlier run)."""
        return index not in self.kept.records


def _record_image(
    run: _Run,
    index: int,
    maps: dict[str, torch.Tensor],
    target: int,
    score: float,
    writer: MapWriter,
    pixels: np.ndarray,
) -> list[MapRecord]:
    """Queue image `index`'s maps for writing, with its line of the record once they are
    written; return its records."""
    plan, name = run.plan, run.loaded.class_names[target]
    records = []
    for method in maps:
        npy, png = plan.files(run.out, index, method)
        records.append(
            MapRecord(
                image=str(plan.paths[index]),
                method=method,
                target=target,
                target_name=name,
                score=round(score, 6),
                map=str(npy),
                overlay=str(png),
                settings=run.explainers[method].settings(),
                choices=run.explainers[method].choices(),
            )
        )
    line = image_line(
        plan.paths[index], plan.folders[index], run.loaded.name, plan.target, records, run.settings
    )
    writer.submit(
        index,
        run.out / plan.folders[index],
        pixels,
        maps,
        f"{plan.paths[index].name}\n{name} {score:.2f}",
        keep=index < SUMMARY_ROWS,
        written=lambda: run.journal.append(line),
    )
    return records


def _explain_shard(run: _Run, batch_size: int, progress: bool) -> _Progress:
    """Explain this process's batches of the images with maps still missing (batches as in an
    uninterrupted run, less the finished images); write their files while the next batches run."""
    plan, loaded = run.plan, run.loaded
    batches = [
        [index for index in range(start, min(start + batch_size, len(plan.paths))) if run.to_explain(index)]
        for start in range(0, len(plan.paths), batch_size)
    ]
    batches = [batch for batch in batches if batch]
    mine = [batches[number] for number in distributed.shard(len(batches))]
    count = sum(len(batch) for batch in mine)
    workers, threads = pipeline_threads()
    loader = DataLoader(
        ImageFiles(plan.paths, loaded.preprocess, run.max_pixels),
        batch_sampler=mine,
        num_workers=workers if count > batch_size else 0,
        collate_fn=list,
        worker_init_fn=exit_with_parent(),
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
            maps, logits = explain_batch(run.explainers, loaded.model, x, plan.target)
            classes, scores = prediction(logits, plan.target)
            for row, (index, _, pixels, _) in enumerate(batch):
                own = {method: method_maps[row] for method, method_maps in maps.items()}
                done.records[index] = _record_image(
                    run, index, own, classes[row], scores[row], writer, pixels
                )
            bar.update(len(batch))
        done.summary = writer.finish()
    finally:
        writer.close()
        bar.close()
    return done


def _start(plan: Plan, out: Path, methods: list[str], journal: Journal, resume: bool, kept: KeptMaps) -> None:
    """On rank 0: begin the record of a new run, or, when resuming, remove what the killed run
    left half-written of the maps to compute."""
    if distributed.rank() != 0:
        return
    if not resume:
        journal.start()
        return
    journal.mend()
    for index in range(len(plan.paths)):
        if index not in kept.records:
            for method in methods:
                for path in plan.files(out, index, method):
                    remove_partials(path)
    for name in (SUMMARY, RESULTS):
        remove_partials(out / name)


def _summary_rows(run: _Run, done: _Progress) -> list[SummaryRow]:
    """The summary figure's rows: the first images with maps, from the writer or, for maps kept
    from an earlier run, read back from their overlays."""
    rows = []
    for index in sorted(done.records)[:SUMMARY_ROWS]:
        if index in done.summary:
            rows.append(done.summary[index])
            continue
        records = done.records[index]
        title = f"{run.plan.paths[index].name}\n{records[0].target_name} {records[0].score:.2f}"
        image = load_image(run.plan.paths[index], run.max_pixels)
        rows.append(summary_row(image, [Path(record.overlay) for record in records], title))
    return rows


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
    resume: bool = False,
    max_pixels: int | None = None,
) -> ExplainReport:
    """Explain every image with every explainer (by method name); write `out/<stem>/<method>.png`
    (overlay) and `.npy` (the map, float32, original image size), `out/summary.png` and
    `out/results.json`.

    Files inside named directories that cannot be read are skipped and reported; a named file
    that cannot be read is an error. Images over `max_pixels` pixels (default: Pillow's limit)
    are refused, or read reduced (JPEG), see `salmap.images.load_image`. No existing file is
    replaced unless `overwrite` is set. Folder names come from the image stems made safe, so
    every file stays inside `out`. Images are decoded by loader workers while the model runs,
    and files are written by a pool of threads (writing costs several times more than decoding),
    so neither waits for the other; at most a few batches wait to be written, so memory stays
    bounded on any number of images.

    Each image's records are appended to `out/records.jsonl` once its files are written. With
    `resume`, the images an earlier run in `out` recorded are kept when their input file, folder,
    model, class and every method's settings are the same and their files read back; the rest are
    computed (replacing what the earlier run left of them), and `results.json` covers all.
    `on_start` is called once the inputs and outputs are checked, before any image is explained.

    Under `torchrun` (a joined process group) rank r explains batches r, r + N, ... and writes
    their files; rank 0 gathers the records and the summary rows and writes `summary.png` and
    `results.json`, the same as one process would. The other ranks return their own records.
    """
    if batch_size < 1:
        raise SalmapError(f"batch size must be >= 1, got {batch_size}")
    out = Path(out)
    methods = list(explainers)
    settings = {name: plain(explainer.settings()) for name, explainer in explainers.items()}
    journal = Journal(out)

    def prepare() -> tuple[Plan, KeptMaps]:
        plan = plan_run(inputs, loaded, methods, out, target, overwrite, resume, max_pixels)
        kept = (
            kept_maps(journal, plan.paths, plan.folders, out, loaded.name, plan.target, settings)
            if resume
            else KeptMaps()
        )
        _start(plan, out, methods, journal, resume, kept)
        return plan, kept

    plan, kept = distributed.checked(prepare)
    if on_start is not None:
        on_start()
    run = _Run(plan, loaded, explainers, out, journal, settings, kept, max_pixels)
    done = _explain_shard(run, batch_size, progress)
    parts = distributed.gather(done)
    for part in (parts or [])[1:]:
        done.merge(part)
    for index, records in kept.records.items():
        done.records[index] = [records[method] for method in methods]
    report = ExplainReport(
        records=[record for index in sorted(done.records) for record in done.records[index]],
        skipped=plan.unreadable
        + [(plan.paths[index], reason) for index, reason in sorted(done.skipped.items())],
        kept=kept.count(),
    )
    if parts is None:
        return report
    if not done.records:
        reasons = "; ".join(reason for _, reason in report.skipped[:5])
        more = f"; and {len(report.skipped) - 5} more" if len(report.skipped) > 5 else ""
        raise SalmapError(f"none of the images could be read: {reasons}{more}")
    pictures, cells, titles = zip(*_summary_rows(run, done), strict=True)
    report.summary = write_atomically(
        out / SUMMARY, lambda p: method_grid(pictures, methods, cells, titles, p)
    )
    choices = {
        name: explainer.choices() or kept.choices.get(name, {}) for name, explainer in explainers.items()
    }
    report.results = write_json(
        out / RESULTS, results_document(loaded.name, report.records, report.skipped, choices)
    )
    return report
