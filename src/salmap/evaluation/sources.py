"""Evaluation data as batches with their ground truth: cluttered digits or an ImageNet folder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from salmap.errors import SalmapError
from salmap.models import LoadedModel
from salmap.workers import exit_with_parent, one_line_errors


@dataclass
class EvalBatch:
    """Normalised images `(B, C, H, W)`, their pixels `(B, 3, H, W)` in [0, 1] (for GraphCut and
    pictures), labels `(B,)`, ground-truth boxes (one `(n_i, 4)` long tensor per image), where
    known the evidence objects' pixel masks (one `(n_i, H, W)` bool tensor per image), and in the
    CASM box geometry the boxes' areas before clipping (one `(n_i,)` tensor per image)."""

    images: torch.Tensor
    pixels: torch.Tensor
    labels: torch.Tensor
    boxes: list[torch.Tensor]
    objects: list[torch.Tensor] | None
    box_areas: list[torch.Tensor] | None = None


@dataclass
class EvalSource:
    """A named evaluation set: its size, whether pixel masks are known, the value (normalised
    space) that removed pixels take, and its batches; the seed it was generated with, and the
    images left out (with the reason)."""

    name: str
    size: int
    has_objects: bool
    fill: float = 0.0
    dataset: Dataset | None = None
    workers: int = 0
    digits: object | None = None
    seed: int | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def batches(
        self, batch_size: int, loaded: LoadedModel, numbers: Sequence[int] | None = None
    ) -> Iterator[EvalBatch]:
        """The set in batches of `batch_size`, or only the batches numbered `numbers` (from 0)
        (ImageNet images are decoded by loader workers)."""
        chosen = range(-(-self.size // batch_size)) if numbers is None else numbers
        parts = [range(n * batch_size, min((n + 1) * batch_size, self.size)) for n in chosen]
        if self.digits is not None:
            data = self.digits
            for rows in parts:
                part = slice(rows.start, rows.stop)
                images = data.images[part]
                yield EvalBatch(
                    images=images,
                    pixels=loaded.denormalize(images).expand(-1, 3, -1, -1),
                    labels=data.labels[part],
                    boxes=list(data.boxes[part]),
                    objects=list(data.masks[part]),
                )
            return
        from salmap.data.imagenet import collate

        loader = DataLoader(
            self.dataset,
            batch_sampler=parts,
            num_workers=self.workers,
            collate_fn=collate,
            worker_init_fn=exit_with_parent(),
        )
        with one_line_errors():
            for batch in loader:
                yield EvalBatch(
                    images=batch["image"],
                    pixels=loaded.denormalize(batch["image"]),
                    labels=batch["label"],
                    boxes=[torch.as_tensor(b).round().long().view(-1, 4) for b in batch["boxes"]],
                    objects=None,
                    box_areas=batch.get("box_areas"),
                )


def digits_source(variant: str = "single", n: int = 500, seed: int = 0, split: str = "test") -> EvalSource:
    """The cluttered digits benchmark (`single` or `twin`), `n` images of a split. Removed pixels
    take the black background (normalised -mean/std), not the mean grey, which the classifier has
    never seen around a digit."""
    from salmap.data.digits import DIGITS_MEAN, DIGITS_STD, VARIANTS, build_split

    if variant not in VARIANTS:
        raise SalmapError(f"unknown digits variant {variant!r}; choose from {', '.join(VARIANTS)}")
    data = build_split(split, n, variant=variant, seed=seed)
    fill = -DIGITS_MEAN[0] / DIGITS_STD[0]
    return EvalSource(
        name=f"digits:{variant}", size=len(data), has_objects=True, fill=fill, digits=data, seed=seed
    )


def imagenet_source(
    root: str | Path, loaded: LoadedModel, limit: int | None, workers: int, box_geometry: str = "crop"
) -> EvalSource:
    """`ROOT/val/<wnid>/*` with XML boxes, mapped to ImageNet-1k indices when the model has 1,000
    classes; only images with a box file are taken, and those whose image or box file cannot be
    read, or with no box of their class inside the centre crop, are left out and listed with the
    reason (`skipped`). `box_geometry="crop"`: preprocessed like `loaded` (its resize and centre
    crop), boxes clipped to the crop; `"casm"`: the CASM authors' scoring geometry, the shorter
    side resized straight to the crop size and the boxes in their integer geometry with their
    areas before clipping (`salmap.data.imagenet.casm_boxes`)."""
    from torch.utils.data import Subset

    from salmap.data.imagenet import ImageNetFolder

    if loaded.resize is None:
        raise SalmapError(f"{loaded.name} has no resize + crop preprocessing for ImageNet images")
    mapping = "imagenet-1k" if len(loaded.class_names) == 1000 else None
    crop = loaded.input_size[0]
    folder = ImageNetFolder(
        root,
        "val",
        resize=crop if box_geometry == "casm" else loaded.resize,
        crop=crop,
        mean=loaded.mean,
        std=loaded.std,
        class_to_idx=mapping,
        box_geometry=box_geometry,
    )
    indices: list[int] = []
    skipped: list[tuple[Path, str]] = []
    boxed = 0
    for index, (path, wnid) in enumerate(folder.samples):
        if limit and len(indices) >= limit:
            break
        if folder.box_file(path, wnid) is None:
            continue
        boxed += 1
        problem = folder.problem(index)
        if problem is None:
            indices.append(index)
        else:
            skipped.append((path, problem))
    if not boxed:
        raise SalmapError(f"no box files found for the images in {Path(root) / 'val'}")
    if not indices:
        raise SalmapError(f"no usable image in {Path(root) / 'val'}: {skipped[0][0]}: {skipped[0][1]}")
    return EvalSource(
        name=f"imagenet:{root}",
        size=len(indices),
        has_objects=False,
        dataset=Subset(folder, indices),
        workers=workers,
        skipped=skipped,
    )


def parse_source(
    spec: str,
    loaded: LoadedModel,
    limit: int | None,
    workers: int = 2,
    seed: int = 0,
    box_geometry: str = "crop",
) -> EvalSource:
    """`digits`, `digits:single`, `digits:twin` or `imagenet:PATH` (read in `box_geometry`)."""
    kind, _, rest = spec.partition(":")
    if kind == "digits":
        return digits_source(rest or "single", n=limit or 500, seed=seed)
    if kind == "imagenet":
        if not rest:
            raise SalmapError("give the ImageNet folder as imagenet:PATH")
        return imagenet_source(rest, loaded, limit, workers, box_geometry)
    raise SalmapError(f"unknown data {spec!r}; use digits[:single|twin] or imagenet:PATH")
