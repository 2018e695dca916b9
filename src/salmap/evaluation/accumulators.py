"""The evaluation's metrics as accumulators: each declares its columns, takes one method's maps
for one batch at a time (`update`), appends the batches that follow (`extend`), and summarises
them into one number per column (`summary`). Per-image values are kept, in batch order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from salmap import metrics
from salmap.boxes import cam_rule_boxes, casm_rule_boxes, graphcut_boxes
from salmap.explainers import Explainer
from salmap.masks import discretize
from salmap.models import LoadedModel

from .columns import Column
from .sources import EvalBatch


@dataclass
class MapsOfBatch:
    """One method's maps `(B, H, W)` (on the CPU) for one batch, with what the metrics need: the
    batch, the model's predictions on it, the loaded model, its device, the value removed pixels
    take, the chunk of images the causal metrics run at once, the batch's number, and for the
    sanity check how many images it takes and how to rebuild the method for another model (None
    for a trained mapper, which carries its own classifier)."""

    batch: EvalBatch
    maps: torch.Tensor
    predictions: torch.Tensor
    loaded: LoadedModel
    device: torch.device
    fill: float
    chunk: int
    number: int
    sanity_images: int = 0
    rebuild: Callable[[nn.Module], Explainer] | None = None


class Accumulator:
    """Per-image values of some columns, one batch at a time."""

    columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = defaultdict(list)

    def add(self, key: str, value: torch.Tensor) -> None:
        """Record a batch's per-image values of `key`, one of the declared columns (or an internal
        series starting with `_`)."""
        if not key.startswith("_") and key not in {column.key for column in self.columns}:
            raise KeyError(f"{type(self).__name__} declares no column {key!r}")
        self.values[key].append(value.detach().float().cpu())

    def column(self, key: str) -> torch.Tensor:
        """All per-image values of `key` so far, in batch order."""
        return torch.cat(self.values[key]) if self.values.get(key) else torch.empty(0)

    def update(self, maps: MapsOfBatch) -> None:
        """Compute this accumulator's values for one batch."""
        raise NotImplementedError

    def extend(self, other: Accumulator) -> None:
        """Append the values of the batches that follow."""
        for key, values in other.values.items():
            self.values[key] += values

    def summary(self, labels: torch.Tensor) -> dict[str, float]:
        """One number per column: the mean over images (NaN left out) unless said otherwise."""
        return {
            column.key: float(self.column(column.key).nanmean())
            for column in self.columns
            if self.values.get(column.key)
        }


def _percent(key: str, title: str, group: str, better: str | None = None, in_table: bool = True) -> Column:
    return Column(key, title, group, percent=True, better=better, in_table=in_table)


class Boxes(Accumulator):
    """LE and OM under the CAM, CASM and GraphCut box rules, F1 / F1a, and BoxAcc over thresholds
    (held-out threshold and MaxBoxAcc, Choe et al. 2020)."""

    columns = (
        _percent("le_cam", "LE, CAM rule", "localisation", "lower"),
        _percent("le_casm", "LE, CASM rule", "localisation", "lower"),
        _percent("le_graphcut", "LE, GraphCut", "localisation", "lower"),
        _percent("om_cam", "OM, CAM rule", "localisation", "lower", in_table=False),
        _percent("om_casm", "OM, CASM rule", "localisation", "lower"),
        _percent("om_graphcut", "OM, GraphCut", "localisation", "lower", in_table=False),
        _percent("f1", "F1", "localisation", "higher"),
        _percent("f1a", "F1a", "localisation", "higher"),
        _percent("box_acc_held_out", "BoxAcc, held-out τ", "localisation", "higher"),
        _percent("max_box_acc", "MaxBoxAcc", "localisation", "higher"),
    )

    def update(self, maps: MapsOfBatch) -> None:
        batch, saliency = maps.batch, maps.maps
        rules = {
            "cam": cam_rule_boxes(saliency),
            "casm": casm_rule_boxes(saliency),
            "graphcut": graphcut_boxes(batch.pixels, saliency),
        }
        for rule, boxes in rules.items():
            self.add(f"le_{rule}", metrics.localization_error(boxes, batch.boxes))
            self.add(
                f"om_{rule}",
                metrics.official_metric_error(boxes, batch.boxes, maps.predictions, batch.labels),
            )
        f1 = metrics.box_f1(saliency, batch.boxes)
        self.add("f1", f1.f1)
        self.add("f1a", f1.f1a)
        self.add("_box_hits", metrics.box_accuracy_sweep(saliency, batch.boxes))

    def summary(self, labels: torch.Tensor) -> dict[str, float]:
        summary = super().summary(labels)
        hits = self.column("_box_hits")
        summary["max_box_acc"] = metrics.max_box_accuracy(hits).accuracy
        summary["box_acc_held_out"] = metrics.two_fold_box_accuracy(hits)
        return summary


class Pointing(Accumulator):
    """The pointing game (Zhang et al. 2016), averaged over classes."""

    columns = (_percent("pointing", "pointing", "localisation", "higher"),)

    def update(self, maps: MapsOfBatch) -> None:
        batch = maps.batch
        if batch.objects is not None:
            self.add("pointing", metrics.pointing_hits(maps.maps, object_masks=batch.objects))
        else:
            self.add("pointing", metrics.pointing_hits(maps.maps, boxes=batch.boxes))

    def summary(self, labels: torch.Tensor) -> dict[str, float]:
        return {"pointing": metrics.pointing_accuracy(self.column("pointing"), labels)}


class Causal(Accumulator):
    """Deletion and insertion AUC (Petsiuk et al. 2018), and their curves summed over images."""

    columns = (
        Column("deletion", "deletion AUC", "evidence", better="lower"),
        Column("insertion", "insertion AUC", "evidence", better="higher"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.curves: dict[str, torch.Tensor] = {}
        self.fractions: torch.Tensor | None = None

    def update(self, maps: MapsOfBatch) -> None:
        batch, model = maps.batch, maps.loaded.model
        saliency = maps.maps.to(maps.device)
        curves = {
            "deletion": metrics.deletion(
                model, batch.images, saliency, batch.labels, batch_size=maps.chunk, fill=maps.fill
            ),
            "insertion": metrics.insertion(
                model, batch.images, saliency, batch.labels, batch_size=maps.chunk
            ),
        }
        for name, curve in curves.items():
            self.add(name, curve.auc)
            summed = curve.curve.sum(dim=0).cpu()
            self.curves[name] = self.curves[name] + summed if name in self.curves else summed
            self.fractions = curve.fractions.cpu()

    def extend(self, other: Causal) -> None:
        super().extend(other)
        for name, summed in other.curves.items():
            self.curves[name] = self.curves[name] + summed if name in self.curves else summed
        self.fractions = other.fractions


class Evidence(Accumulator):
    """Where pixel masks of the evidence are known: pixel AUROC of the map, the fraction of each
    object covered by the binary mask, and whether every object is covered."""

    columns = (
        Column("auroc", "pixel AUROC", "evidence", better="higher"),
        _percent("coverage", "coverage", "evidence", "higher"),
        _percent("covers_all", "covers every object", "evidence", "higher"),
    )

    def update(self, maps: MapsOfBatch) -> None:
        objects = maps.batch.objects
        if objects is None:
            return
        union = torch.stack([found.any(dim=0) for found in objects])
        self.add("auroc", metrics.pixel_auroc(maps.maps, union))
        coverage = metrics.object_coverage(discretize(maps.maps), objects)
        self.add("coverage", torch.stack([c.mean() for c in coverage]))
        self.add("covers_all", metrics.covers_all(coverage))


class MaskStatistics(Accumulator):
    """Mean mask, the std across images of their means, entropy and total variation."""

    columns = (
        Column("mask_mean", "mean mask", "masks"),
        Column("mask_std", "std of image means", "masks"),
        Column("entropy", "entropy", "masks"),
        Column("total_variation", "TV", "masks"),
    )

    def update(self, maps: MapsOfBatch) -> None:
        stats = metrics.mask_statistics(maps.maps)
        self.add("mask_mean", stats.mean)
        self.add("entropy", stats.entropy)
        self.add("total_variation", stats.total_variation)

    def summary(self, labels: torch.Tensor) -> dict[str, float]:
        stats = metrics.MaskStatistics(
            self.column("mask_mean"), self.column("entropy"), self.column("total_variation")
        )
        return metrics.summarize_mask_statistics(stats)


def _reference_columns() -> tuple[Column, ...]:
    """The trivial masks' rows: all zero, all one and random masks, for each masked image."""
    return tuple(
        _percent(
            f"{kind}_{variant}",
            f"{kind} mask, {variant.replace('_', '-')} top-1",
            "classification",
            in_table=(kind, variant) == ("random", "masked_out"),
        )
        for kind in metrics.MASK_KINDS[1:]
        for variant in metrics.VARIANTS
    )


class MaskedClassification(Accumulator):
    """Top-1 of the model on the masked-in, masked-out and inpainted images of the binary mask
    b = m >= mean(m), with the all-zero, all-one and random masks as reference rows."""

    columns = (
        _percent("masked_in", "masked-in top-1", "classification", "higher"),
        _percent("masked_out", "masked-out top-1", "classification", "lower"),
        _percent("inpainted", "inpainted top-1", "classification", "lower"),
        *_reference_columns(),
    )

    def update(self, maps: MapsOfBatch) -> None:
        loaded = maps.loaded
        table = metrics.masked_classification(
            {loaded.name: loaded.model},
            maps.batch.images,
            discretize(maps.maps.to(maps.device)),
            maps.batch.labels,
            mean=loaded.mean,
            std=loaded.std,
            fill=maps.fill,
        )
        for (_, variant, kind), predictions in table.items():
            self.add(variant if kind == "map" else f"{kind}_{variant}", predictions.top1)


class Sanity(Accumulator):
    """The cascading randomisation sanity check (Adebayo et al. 2018) on the first images."""

    columns = (
        Column("sanity_spearman_abs", "Spearman of abs(map), all blocks random", "sanity", better="lower"),
        Column("sanity_ssim", "SSIM, all blocks random", "sanity", better="lower"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.result: metrics.SanityResult | None = None

    def update(self, maps: MapsOfBatch) -> None:
        """On the first batch's first `sanity_images` images, compare the maps of the method
        rebuilt for randomised copies of the model with the trained model's maps."""
        if maps.number != 0 or maps.sanity_images < 1 or maps.rebuild is None:
            return
        count = maps.sanity_images
        self.result = metrics.cascading_randomization(
            maps.loaded.model, maps.rebuild, maps.batch.images[:count], maps.batch.labels[:count]
        )
        self.add("sanity_spearman_abs", self.result.spearman_abs[:, -1])
        self.add("sanity_ssim", self.result.ssim[:, -1])

    def extend(self, other: Sanity) -> None:
        super().extend(other)
        self.result = self.result or other.result


ACCUMULATORS: tuple[type[Accumulator], ...] = (
    Boxes,
    Pointing,
    Causal,
    Evidence,
    MaskStatistics,
    MaskedClassification,
    Sanity,
)
COLUMNS: tuple[Column, ...] = tuple(column for kind in ACCUMULATORS for column in kind.columns)
