"""Figures: a grid of overlays, one row per image and one column per method."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def method_grid(
    images: Sequence[Image.Image],
    columns: Sequence[str],
    cells: Sequence[Sequence[Image.Image]],
    row_titles: Sequence[str],
    path: Path,
    cell_inches: float = 2.2,
) -> None:
    """Save a grid: the original image in the first column, then one overlay per method
    (`cells[row][column]`); each row is titled with its class name and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .text import drawable, font_families

    rows, cols = len(images), len(columns) + 1
    aspect = float(np.mean([image.height / image.width for image in images]))
    with plt.rc_context({"font.family": list(font_families())}):
        figure, axes = plt.subplots(
            rows, cols, figsize=(cell_inches * cols, cell_inches * aspect * rows + 0.4), squeeze=False
        )
        for r, (image, title) in enumerate(zip(images, row_titles, strict=True)):
            pictures = [image, *cells[r]]
            for c, picture in enumerate(pictures):
                axis = axes[r][c]
                axis.imshow(np.asarray(picture))
                axis.set_xticks([])
                axis.set_yticks([])
                if r == 0:
                    axis.set_title("image" if c == 0 else drawable(columns[c - 1]), fontsize=10)
            axes[r][0].set_ylabel(drawable(title), fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    plt.close(figure)
