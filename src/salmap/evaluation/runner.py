"""Every metric for every method on the same data: the engine behind `salmap evaluate`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn
from tqdm import tqdm

from salmap import distributed
from salmap.boxes import casm_rule_boxes
from salmap.explainers import Explainer
from salmap.models import LoadedModel
from salmap.registry import method

from .accumulators import COLUMNS, Accumulator, MapsOfBatch
from .protocols import SALMAP, Protocol
from .sources import EvalBatch, EvalSource

if TYPE_CHECKING:
    from .store import BatchStore

A = TypeVar("A", bound=Accumulator)

GALLERY_IMAGES = 6


@dataclass
class MethodResults:
    """One method's accumulators (the protocol's, in its order) and its gallery maps and boxes."""

    accumulators: list[Accumulator]
    gallery: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @classmethod
    def of_protocol(cls, protocol: Protocol) -> MethodResults:
        """Empty results with the protocol's accumulators."""
        return cls([kind() for kind in protocol.accumulators])

    def extend(self, other: MethodResults) -> None:
        """Append the results of the batches that follow."""
        for ours, theirs in zip(self.accumulators, other.accumulators, strict=True):
            ours.extend(theirs)
        self.gallery += other.gallery

    def of(self, kind: type[A]) -> A:
        """The accumulator of a kind."""
        return next(found for found in self.accumulators if isinstance(found, kind))

    def summary(self, labels: torch.Tensor) -> dict[str, float]:
        """One number per column (fractions, not percentages), in `COLUMNS` order."""
        summary: dict[str, float] = {}
        for accumulator in self.accumulators:
            summary.update(accumulator.summary(labels))
        return {column.key: summary[column.key] for column in COLUMNS if column.key in summary}


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
    protocol: Protocol = SALMAP


@dataclass(frozen=True)
class _Settings:
    """How a run evaluates: images per batch, images for the sanity check, the removed pixels'
    value, the protocol."""

    batch_size: int
    sanity_images: int
    fill: float
    protocol: Protocol


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


def _evaluate_batch(
    number: int,
    batch: EvalBatch,
    loaded: LoadedModel,
    explainers: dict[str, Explainer],
    make_explainer: Callable[[str, nn.Module], Explainer],
    settings: _Settings,
    bar: tqdm,
) -> _BatchResults:
    """Every method's maps of one batch and their accumulated metrics."""
    device = next(loaded.model.parameters()).device
    batch.images, batch.labels = batch.images.to(device), batch.labels.to(device)
    with torch.no_grad():
        predicted = loaded.model(batch.images).argmax(dim=-1).cpu()
    room = max(GALLERY_IMAGES - number * settings.batch_size, 0)
    part = _BatchResults(
        number=number,
        labels=batch.labels.cpu(),
        predictions=predicted,
        gallery_pixels=batch.pixels[:room].cpu(),
        gallery_boxes=batch.boxes[:room],
        methods={name: MethodResults.of_protocol(settings.protocol) for name in explainers},
    )
    for name, explainer in explainers.items():
        trained = method(name).trained
        if trained:  # the raw mask m(x), and the mapper's own classifier's top-1
            explanation = explainer.with_prediction(batch.images, batch.labels, normalize=False)
            maps, own = explanation.maps.cpu(), explanation.logits.argmax(dim=-1).cpu()
        else:
            maps, own = explainer(batch.images, batch.labels).cpu(), predicted
        view = MapsOfBatch(
            batch=batch,
            maps=maps,
            predictions=predicted,
            own_predictions=own,
            loaded=loaded,
            device=device,
            fill=settings.fill,
            chunk=settings.batch_size * 4,
            number=number,
            protocol=settings.protocol,
            sanity_images=settings.sanity_images,
            rebuild=None if trained else lambda model, name=name: make_explainer(name, model),
        )
        result = part.methods[name]
        for accumulator in result.accumulators:
            accumulator.update(view)
        if room > 0:
            result.gallery.append((maps[:room], casm_rule_boxes(maps[:room])))
        bar.update(len(batch.labels))
    return part


def evaluate(
    loaded: LoadedModel,
    methods: list[str],
    make_explainer: Callable[[str, nn.Module], Explainer],
    source: EvalSource,
    batch_size: int = 32,
    sanity_images: int = 4,
    progress: bool = True,
    protocol: Protocol = SALMAP,
    store: BatchStore | None = None,
    resume: bool = False,
) -> Evaluation | None:
    """Explain every image of `source` with every method and accumulate the metrics of the
    `protocol` (`salmap.evaluation.protocols`; by default every metric: LE / OM (three box
    rules), F1 / F1a, BoxAcc sweeps, pointing game, deletion / insertion AUC, mask statistics,
    masked-image classification, the sanity check and, where pixel masks are known, AUROC and
    per-object coverage). The maps explain the ground-truth class of each image; trained mappers
    are scored on their raw masks m(x). `make_explainer(method, model)` builds a method for a
    model; the sanity check rebuilds it for randomised copies of the model, on the first
    `sanity_images` images (not for the trained mappers, which carry their own classifier).
    Deleted pixels take the source's fill value; masked images the protocol's.

    With a `store` each batch's values are saved as it finishes; with `resume` the batches it
    holds from a stopped run of the same evaluation are read back instead of computed.

    Under `torchrun` (a joined process group) rank r evaluates batches r, r + N, ...; rank 0
    gathers every batch's values and returns what one process would, the other ranks None."""
    explainers = {name: make_explainer(name, loaded.model) for name in methods}
    settings = _Settings(batch_size, sanity_images, source.fill, protocol)
    if store is not None:
        identity = {
            "data": source.name,
            "images": source.size,
            "model": loaded.name,
            "methods": {name: explainer.settings() for name, explainer in explainers.items()},
            "batch_size": batch_size,
            "sanity_images": sanity_images,
            "seed": source.seed,
            "protocol": protocol.name,
            "causal_target": protocol.causal_target,
        }
        distributed.checked(lambda: store.start(identity, resume) if distributed.rank() == 0 else None)
    numbers = distributed.shard(-(-source.size // batch_size))
    saved = {number: store.load(number) for number in numbers} if store is not None and resume else {}
    done = [part for part in saved.values() if part is not None]
    todo = [number for number in numbers if saved.get(number) is None]
    images = sum(min(batch_size, source.size - number * batch_size) for number in todo)
    bar = tqdm(
        total=images * len(explainers),
        desc="evaluating",
        unit="map",
        disable=not progress or distributed.rank() != 0,
    )
    try:
        for number, batch in zip(todo, source.batches(batch_size, loaded, todo), strict=True):
            part = _evaluate_batch(number, batch, loaded, explainers, make_explainer, settings, bar)
            if store is not None:
                store.save(part)
            done.append(part)
    finally:
        bar.close()
    gathered = distributed.gather(done)
    if gathered is None:
        return None
    parts = sorted((part for ranks in gathered for part in ranks), key=lambda part: part.number)
    return _merge(source, loaded.name, list(explainers), parts, protocol)


def _merge(
    source: EvalSource, model_name: str, methods: list[str], parts: list[_BatchResults], protocol: Protocol
) -> Evaluation:
    """The evaluation of the batches `parts`, in batch order."""
    results = {name: MethodResults.of_protocol(protocol) for name in methods}
    for part in parts:
        for name, result in part.methods.items():
            results[name].extend(result)
    return Evaluation(
        source=source,
        model_name=model_name,
        methods=results,
        labels=torch.cat([part.labels for part in parts]),
        predictions=torch.cat([part.predictions for part in parts]),
        gallery_pixels=torch.cat([part.gallery_pixels for part in parts]),
        gallery_boxes=[boxes for part in parts for boxes in part.gallery_boxes],
        protocol=protocol,
    )
