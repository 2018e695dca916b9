"""Every metric for every method on the same data: the engine behind `salmap evaluate`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from salmap import distributed, metrics
from salmap.boxes import cam_rule_boxes, casm_rule_boxes, graphcut_boxes
from salmap.explainers import Explainer
from salmap.masks import discretize
from salmap.models import LoadedModel
from salmap.registry import method

from .sources import EvalBatch, EvalSource

GALLERY_IMAGES = 6


@dataclass
class MethodResults:
    """Per-image values of one method, concatenated over batches, and the summed causal curves."""

    values: dict[str, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))
    box_hits: list[torch.Tensor] = field(default_factory=list)
    deletion_curve: torch.Tensor | None = None
    insertion_curve: torch.Tensor | None = None
    fractions: torch.Tensor | None = None
    classification: dict[tuple[str, str], list[torch.Tensor]] = field(
        default_factory=lambda: defaultdict(list)
    )
    gallery: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    sanity: metrics.SanityResult | None = None

    def add(self, name: str, value: torch.Tensor) -> None:
        self.values[name].append(value.detach().float().cpu())

    def column(self, name: str) -> torch.Tensor:
        return torch.cat(self.values[name]) if self.values.get(name) else torch.empty(0)

    def extend(self, other: MethodResults) -> None:
        """Append the results of the batches that follow."""
        for name, values in other.values.items():
            self.values[name] += values
        self.box_hits += other.box_hits
        for key, values in other.classification.items():
            self.classification[key] += values
        self.gallery += other.gallery
        for name in ("deletion_curve", "insertion_curve"):
            ours, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if ours is None else ours + theirs)
        self.fractions = other.fractions
        self.sanity = other.sanity if self.sanity is None else self.sanity


@dataclass
class Evaluation:
    """What `evaluate` measured: per method results plus the data's labels and predictions."""

    source: EvalSource
    model_name: str
    methods: dict[str, MethodResults]
    labels: torch.Tensor
    predictions: torch.Tensor
    gallery_pixels: torch.Tensor
    gallery_boxes: list[torch.Tensor]


@dataclass
class _BatchResults:
    """One batch's share of an `Evaluation`: its number (from 0), labels, predictions, gallery
    images and boxes, and each method's results."""

    number: int
    labels: torch.Tensor
    predictions: torch.Tensor
    gallery_pixels: torch.Tensor
    gallery_boxes: list[torch.Tensor]
    methods: dict[str, MethodResults]


def _box_metrics(results: MethodResults, batch: EvalBatch, maps: torch.Tensor, predictions) -> None:
    rules = {
        "cam": cam_rule_boxes(maps),
        "casm": casm_rule_boxes(maps),
        "graphcut": graphcut_boxes(batch.pixels, maps),
    }
    for rule, boxes in rules.items():
        results.add(f"le_{rule}", metrics.localization_error(boxes, batch.boxes))
        results.add(
            f"om_{rule}", metrics.official_metric_error(boxes, batch.boxes, predictions, batch.labels)
        )
    f1 = metrics.box_f1(maps, batch.boxes)
    results.add("f1", f1.f1)
    results.add("f1a", f1.f1a)
    results.box_hits.append(metrics.box_accuracy_sweep(maps, batch.boxes).cpu())


def _evidence_metrics(results: MethodResults, batch: EvalBatch, maps: torch.Tensor) -> None:
    if batch.objects is not None:
        results.add("pointing", metrics.pointing_hits(maps, object_masks=batch.objects))
        union = torch.stack([objects.any(dim=0) for objects in batch.objects])
        results.add("auroc", metrics.pixel_auroc(maps, union))
        coverage = metrics.object_coverage(discretize(maps), batch.objects)
        results.add("coverage", torch.stack([c.mean() for c in coverage]))
        results.add("covers_all", metrics.covers_all(coverage))
    else:
        results.add("pointing", metrics.pointing_hits(maps, boxes=batch.boxes))
    stats = metrics.mask_statistics(maps)
    results.add("mask_mean", stats.mean)
    results.add("entropy", stats.entropy)
    results.add("total_variation", stats.total_variation)


def _causal_metrics(
    results: MethodResults,
    model: torch.nn.Module,
    batch: EvalBatch,
    maps: torch.Tensor,
    targets: torch.Tensor,
    chunk: int,
    fill: float,
) -> None:
    curves = {
        "deletion": metrics.deletion(model, batch.images, maps, targets, batch_size=chunk, fill=fill),
        "insertion": metrics.insertion(model, batch.images, maps, targets, batch_size=chunk),
    }
    for name, curve in curves.items():
        results.add(name, curve.auc)
        summed = curve.curve.sum(dim=0).cpu()
        current = getattr(results, f"{name}_curve")
        setattr(results, f"{name}_curve", summed if current is None else current + summed)
        results.fractions = curve.fractions.cpu()


def _classification(
    results: MethodResults, loaded: LoadedModel, batch: EvalBatch, maps: torch.Tensor, fill: float
) -> None:
    table = metrics.masked_classification(
        {loaded.name: loaded.model},
        batch.images,
        discretize(maps),
        batch.labels,
        mean=loaded.mean,
        std=loaded.std,
        fill=fill,
    )
    for (_, variant, kind), predictions in table.items():
        results.classification[(variant, kind)].append(predictions.top1.float().cpu())


def evaluate(
    loaded: LoadedModel,
    methods: list[str],
    make_explainer: Callable[[str, nn.Module], Explainer],
    source: EvalSource,
    batch_size: int = 32,
    sanity_images: int = 4,
    progress: bool = True,
) -> Evaluation | None:
    """Explain every image of `source` with every method and compute LE / OM (three box rules),
    F1 / F1a, BoxAcc sweeps, pointing game, deletion / insertion AUC, mask statistics, masked-image
    classification and, where pixel masks are known, AUROC and per-object coverage. The maps
    explain the ground-truth class of each image. `make_explainer(method, model)` builds a method
    for a model; the sanity check rebuilds it for randomised copies of the model, on the first
    `sanity_images` images (not for CASM and its Baseline, which carry their own classifier).
    Removed pixels (deletion, masked images) take the source's fill value.

    Under `torchrun` (a joined process group) rank r evaluates batches r, r + N, ...; rank 0
    gathers every batch's values and returns what one process would, the other ranks None."""
    model = loaded.model
    explainers = {name: make_explainer(name, model) for name in methods}
    device = next(model.parameters()).device
    numbers = distributed.shard(-(-source.size // batch_size))
    images = sum(min(batch_size, source.size - number * batch_size) for number in numbers)
    bar = tqdm(
        total=images * len(explainers),
        desc="evaluating",
        unit="map",
        disable=not progress or distributed.rank() != 0,
    )
    done: list[_BatchResults] = []
    try:
        for number, batch in zip(numbers, source.batches(batch_size, loaded, numbers), strict=True):
            batch.images, batch.labels = batch.images.to(device), batch.labels.to(device)
            with torch.no_grad():
                predicted = model(batch.images).argmax(dim=-1)
            room = max(GALLERY_IMAGES - number * batch_size, 0)
            part = _BatchResults(
                number=number,
                labels=batch.labels.cpu(),
                predictions=predicted.cpu(),
                gallery_pixels=batch.pixels[:room].cpu(),
                gallery_boxes=batch.boxes[:room],
                methods={name: MethodResults() for name in explainers},
            )
            for name, explainer in explainers.items():
                maps = explainer(batch.images, batch.labels).cpu()
                result = part.methods[name]
                _box_metrics(result, batch, maps, predicted.cpu())
                _evidence_metrics(result, batch, maps)
                _causal_metrics(
                    result, model, batch, maps.to(device), batch.labels, batch_size * 4, source.fill
                )
                _classification(result, loaded, batch, maps.to(device), source.fill)
                if room > 0:
                    result.gallery.append((maps[:room], casm_rule_boxes(maps[:room])))
                if number == 0 and sanity_images > 0 and not method(name).trained:
                    result.sanity = metrics.cascading_randomization(
                        model,
                        lambda m, name=name: make_explainer(name, m),
                        batch.images[:sanity_images],
                        batch.labels[:sanity_images],
                    )
                bar.update(len(batch.labels))
            done.append(part)
    finally:
        bar.close()
    gathered = distributed.gather(done)
    if gathered is None:
        return None
    parts = sorted((part for ranks in gathered for part in ranks), key=lambda part: part.number)
    results = {name: MethodResults() for name in explainers}
    for part in parts:
        for name, result in part.methods.items():
            results[name].extend(result)
    return Evaluation(
        source=source,
        model_name=loaded.name,
        methods=results,
        labels=torch.cat([part.labels for part in parts]),
        predictions=torch.cat([part.predictions for part in parts]),
        gallery_pixels=torch.cat([part.gallery_pixels for part in parts]),
        gallery_boxes=[boxes for part in parts for boxes in part.gallery_boxes],
    )
