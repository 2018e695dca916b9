"""Writing the maps of `salmap explain` while the model runs: a pool of threads writes each
image's `.npy` maps and `.png` overlays, at most a few batches behind."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from salmap.images import map_to_image, overlay
from salmap.io import save_array, save_png
from salmap.models import LoadedModel

SUMMARY_PIXELS = 440

SummaryRow = tuple[Image.Image, list[Image.Image], str]


def write_maps(
    folder: Path,
    pixels: np.ndarray,
    maps: dict[str, torch.Tensor],
    loaded: LoadedModel,
    keep: bool,
    written: Callable[[], None] | None = None,
) -> tuple[Image.Image, list[Image.Image]] | None:
    """Write `<method>.npy` (the map at the image's size) and `<method>.png` (the overlay) for
    each method, then call `written()`; return the image and its overlays when `keep`, at most
    `SUMMARY_PIXELS` on a side (for the summary figure, whose cells are smaller)."""
    image = Image.fromarray(pixels)
    overlays = []
    for method, saliency in maps.items():
        full = map_to_image(saliency, (image.height, image.width), loaded.resize, loaded.input_size)
        picture = overlay(image, full)
        save_array(folder / f"{method}.npy", full)
        save_png(folder / f"{method}.png", picture)
        if keep:
            picture.thumbnail((SUMMARY_PIXELS, SUMMARY_PIXELS))
            overlays.append(picture)
    if written is not None:
        written()
    if keep:
        image.thumbnail((SUMMARY_PIXELS, SUMMARY_PIXELS))
    return (image, overlays) if keep else None


def summary_row(image: Image.Image, overlays: list[Path], title: str) -> SummaryRow:
    """A summary row read back from written overlays (for maps kept from an earlier run)."""
    pictures = []
    for path in overlays:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        picture.thumbnail((SUMMARY_PIXELS, SUMMARY_PIXELS))
        pictures.append(picture)
    image = image.copy()
    image.thumbnail((SUMMARY_PIXELS, SUMMARY_PIXELS))
    return image, pictures, title


class MapWriter:
    """Writes images' maps on `threads` threads; `submit` waits while more than `4 * threads`
    images are pending, so memory stays bounded on any number of images. `finish` waits for every
    write and returns the summary rows (image, overlays, title) of the images asked to keep."""

    def __init__(self, loaded: LoadedModel, threads: int) -> None:
        self.loaded = loaded
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.pending: list[tuple[int, str, Future]] = []
        self.done = 0

    def submit(
        self,
        index: int,
        folder: Path,
        pixels: np.ndarray,
        maps: dict[str, torch.Tensor],
        title: str,
        keep: bool,
        written: Callable[[], None] | None = None,
    ) -> None:
        """Write image `index`'s maps into `folder`, then call `written()`; keep a summary row
        titled `title` if `keep`."""
        future = self.pool.submit(write_maps, folder, pixels, maps, self.loaded, keep, written)
        self.pending.append((index, title, future))
        while len(self.pending) - self.done > 4 * self.threads:
            self.pending[self.done][2].result()
            self.done += 1

    def finish(self) -> dict[int, SummaryRow]:
        """Wait for every write (raising the first error) and return the kept summary rows."""
        rows: dict[int, SummaryRow] = {}
        for index, title, future in self.pending:
            kept = future.result()
            if kept is not None:
                rows[index] = (*kept, title)
        return rows

    def close(self) -> None:
        """Stop the threads (after the writes already started)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
