"""Cluttered digits: a localisation benchmark with pixel-exact ground truth from real handwriting.

Source digits are scikit-learn's bundled UCI digits (1,797 greyscale 8x8 images, values 0..16).
Each is scaled to [0, 1], upscaled to `digit_size` pixels (bicubic), and ink below
`STROKE_THRESHOLD` is set to zero so that the stroke mask (`ink > 0`) is exactly the set of pixels
the digit inks. The digit is placed on a black `canvas_size` square together with `clutter`
fragments: random `fragment_size` crops of upscaled source digits of OTHER classes, so no fragment
shows a whole digit, let alone one of the evidence class. Clutter is erased within `CLEARANCE`
pixels of every evidence stroke, so the evidence masks stay exact: an image pixel belongs to the
evidence digit iff its mask is set.

Variants: `single` (one digit) and `twin` (two copies of the same source digit; their
`digit_size` placement squares do not overlap and their centres are at least half the canvas
apart). Labels are the digit values 0..9 even when `classes` restricts which digits appear.

Train, validation and test samples come from disjoint source images: the 1,797 sources are split
once, per class and with a fixed seed, into 60% / 15% / 25% (`source_indices`); the fragments of a
split come from the same split's sources. Generation is deterministic for a seed.

Images are `(1, H, W)` float tensors normalised as `(pixel - DIGITS_MEAN) / DIGITS_STD` with
pixels in [0, 1] (0 = background). Boxes are `(x0, y0, x1, y1)` pixel coordinates with x1, y1
exclusive: the tight box of each evidence mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from salmap.errors import SalmapError

DIGITS_MEAN = (0.08,)
DIGITS_STD = (0.24,)
STROKE_THRESHOLD = 0.2
CLEARANCE = 2
SPLITS = ("train", "val", "test")
VARIANTS = ("single", "twin")
_SPLIT_FRACTIONS = (0.60, 0.15, 0.25)
_SOURCE_SPLIT_SEED = 20240601


@lru_cache(maxsize=1)
def _sources() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


@lru_cache(maxsize=4)
def _upscaled(digit_size: int) -> np.ndarray:
    """All source digits at `digit_size` pixels, ink below the stroke threshold set to zero."""
    images, _ = _sources()
    size = (digit_size, digit_size)
    ink = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_CUBIC) for im in images])
    ink = np.clip(ink, 0.0, 1.0)
    ink[ink < STROKE_THRESHOLD] = 0.0
    return ink


def source_indices(split: str) -> np.ndarray:
    """Indices into `sklearn.datasets.load_digits()` of the source images of a split (sorted).

    The three splits are disjoint and stratified by class; they do not depend on any seed.
    """
    if split not in SPLITS:
        raise SalmapError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    _, labels = _sources()
    rng = np.random.default_rng(_SOURCE_SPLIT_SEED)
    chosen = []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        ends = np.round(np.cumsum(_SPLIT_FRACTIONS) * len(members)).astype(int)
        starts = np.concatenate([[0], ends[:-1]])
        part = SPLITS.index(split)
        chosen.append(members[starts[part] : ends[part]])
    return np.sort(np.concatenate(chosen))


@dataclass
class DigitsSplit:
    """A generated split as tensors; K is 1 for `single` and 2 for `twin`.

    images `(N, 1, H, W)` float32, normalised; labels `(N,)` int64 digit values; boxes
    `(N, K, 4)` int64 `(x0, y0, x1, y1)`, x1/y1 exclusive; masks `(N, K, H, W)` bool stroke masks,
    one per evidence copy; sources `(N,)` int64 indices into `load_digits()`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    sources: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _positions(
    rng: np.random.Generator, n: int, copies: int, span: int, canvas: int, size: int
) -> np.ndarray:
    """Top-left corners `(n, copies, 2)` as (y, x); twin copies far apart and non-overlapping."""
    if copies == 1:
        return rng.integers(0, span + 1, size=(n, 1, 2))
    corners = np.empty((n, 2, 2), dtype=np.int64)
    todo = np.arange(n)
    while len(todo):
        candidates = rng.integers(0, span + 1, size=(len(todo), 64, 2, 2))
        delta = np.abs(candidates[:, :, 0] - candidates[:, :, 1])
        apart = (delta.max(axis=-1) >= size) & (np.hypot(delta[..., 0], delta[..., 1]) >= canvas / 2)
        found = apart.any(axis=1)
        first = apart.argmax(axis=1)
        corners[todo[found]] = candidates[found, first[found]]
        todo = todo[~found]
    return corners


def build_split(
    split: str,
    n: int,
    *,
    variant: str = "single",
    seed: int = 0,
    classes: Sequence[int] | None = None,
    canvas_size: int = 64,
    digit_size: int = 24,
    clutter: int = 8,
    fragment_size: int = 8,
) -> DigitsSplit:
    """Generate `n` cluttered-digit samples of a split at once (deterministic for `seed`).

    `classes` restricts the evidence digits (e.g. `range(5)` for seen classes); clutter comes
    from the other classes of the same split's sources.
    """
    copies = 1 if variant == "single" else 2
    wanted = _check_layout(variant, n, clutter, canvas_size, digit_size, fragment_size, classes)
    _, all_labels = _sources()
    ink = _upscaled(digit_size)
    pool = source_indices(split)
    evidence_pool = pool[np.isin(all_labels[pool], wanted)]
    rng = np.random.default_rng([seed, SPLITS.index(split), copies])
    sources = rng.choice(evidence_pool, size=n)
    labels = all_labels[sources]
    corners = _positions(rng, n, copies, canvas_size - digit_size, canvas_size, digit_size)
    # Fragments: for each sample, sources of other classes, crop offsets and canvas positions.
    others = np.stack([rng.choice(pool[all_labels[pool] != d], size=clutter) for d in labels])
    crops = rng.integers(0, digit_size - fragment_size + 1, size=(n, clutter, 2))
    places = rng.integers(0, canvas_size - fragment_size + 1, size=(n, clutter, 2))
    shape = (canvas_size, canvas_size)
    images = np.zeros((n, *shape), dtype=np.float32)
    masks = np.zeros((n, copies, *shape), dtype=bool)
    for i in range(n):
        evidence = np.zeros(shape, dtype=np.float32)
        for k, (y, x) in enumerate(corners[i]):
            evidence[y : y + digit_size, x : x + digit_size] = ink[sources[i]]
            masks[i, k, y : y + digit_size, x : x + digit_size] = ink[sources[i]] > 0
        fragments = [
            ink[src, cy : cy + fragment_size, cx : cx + fragment_size]
            for src, (cy, cx) in zip(others[i], crops[i], strict=True)
        ]
        images[i] = evidence + _clutter(evidence, fragments, places[i])
    normalised = (images[:, None] - DIGITS_MEAN[0]) / DIGITS_STD[0]
    return DigitsSplit(
        images=torch.from_numpy(normalised),
        labels=torch.from_numpy(labels),
        boxes=torch.from_numpy(_tight_boxes(masks)),
        masks=torch.from_numpy(masks),
        sources=torch.from_numpy(sources),
    )


def _check_layout(
    variant: str,
    n: int,
    clutter: int,
    canvas_size: int,
    digit_size: int,
    fragment_size: int,
    classes: Sequence[int] | None,
) -> list[int]:
    """Check a split's settings; return the evidence classes, sorted."""
    if variant not in VARIANTS:
        raise SalmapError(f"unknown digits variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if n < 1 or clutter < 0:
        raise SalmapError(f"need at least 1 sample and no negative clutter, got n={n}, clutter={clutter}")
    span = canvas_size - digit_size
    if not 0 < fragment_size <= digit_size or span < 0:
        raise SalmapError(
            f"need fragment_size <= digit_size <= canvas_size, got {fragment_size}, "
            f"{digit_size}, {canvas_size}"
        )
    if variant != "single" and (span < digit_size or np.hypot(span, span) < canvas_size / 2):
        raise SalmapError(
            f"a {canvas_size}px canvas cannot hold two {digit_size}px digits far apart; "
            f"use a canvas of at least {2 * digit_size}px"
        )
    wanted = sorted({int(c) for c in range(10)} if classes is None else {int(c) for c in classes})
    if not wanted or not set(wanted) <= set(range(10)):
        raise SalmapError(f"classes must be digits 0..9, got {list(classes or [])}")
    return wanted


def _clutter(evidence: np.ndarray, fragments: list[np.ndarray], places: np.ndarray) -> np.ndarray:
    """The fragments pasted at `places` (brightest pixel wins), cleared within `CLEARANCE` pixels
    of the evidence's ink."""
    image = np.zeros_like(evidence)
    for fragment, (py, px) in zip(fragments, places, strict=True):
        region = image[py : py + fragment.shape[0], px : px + fragment.shape[1]]
        np.maximum(region, fragment, out=region)
    kernel = np.ones((2 * CLEARANCE + 1, 2 * CLEARANCE + 1), np.uint8)
    near = cv2.dilate((evidence > 0).astype(np.uint8), kernel).astype(bool)
    image[near] = 0.0
    return image


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """`(N, K, H, W)` bool masks -> `(N, K, 4)` int64 tight boxes, x1/y1 exclusive."""
    rows, cols = masks.any(axis=3), masks.any(axis=2)
    height, width = masks.shape[2:]
    y0, x0 = rows.argmax(axis=2), cols.argmax(axis=2)
    y1 = height - rows[..., ::-1].argmax(axis=2)
    x1 = width - cols[..., ::-1].argmax(axis=2)
    return np.stack([x0, y0, x1, y1], axis=-1).astype(np.int64)


class ClutteredDigits(Dataset):
    """A generated split as a torch `Dataset` (see `build_split` for the arguments).

    Items are dicts: `image (1, H, W)`, `label ()`, `boxes (K, 4)`, `masks (K, H, W)`,
    `source ()`; the default `DataLoader` collation stacks them.
    """

    def __init__(self, split: str = "test", n: int = 1000, **options: Any) -> None:
        self.data = build_split(split, n, **options)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        d = self.data
        return {
            "image": d.images[index],
            "label": d.labels[index],
            "boxes": d.boxes[index],
            "masks": d.masks[index],
            "source": d.sources[index],
        }
