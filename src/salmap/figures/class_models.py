"""Class model visualisations as a grid of pictures with their class, score and probability."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from salmap.class_models import ClassVisualization


def save_class_grid(
    result: ClassVisualization, class_names: Sequence[str], path: str | Path, columns: int = 5
) -> None:
    """Save the images as a grid, each titled below with its class name, score and probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .text import drawable, font_families

    count = len(result.class_indices)
    cols = min(columns, count)
    rows = -(-count // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.9 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for k, (index, name) in enumerate(zip(result.class_indices, class_names, strict=True)):
        axis = axes.flat[k]
        picture = result.images[k].permute(1, 2, 0).numpy()
        gray = picture.shape[-1] == 1
        axis.imshow(picture[..., 0] if gray else picture, cmap="gray" if gray else None, vmin=0, vmax=1)
        score, probability = float(result.scores[k]), float(result.probabilities[k])
        caption = f"{name} ({index})\nscore {score:.1f}, p {probability:.2f}"
        axis.text(
            0.5,
            -0.03,
            drawable(caption),
            transform=axis.transAxes,
            ha="center",
            va="top",
            fontsize=9,
            fontfamily=list(font_families()),
        )
    figure.tight_layout(h_pad=2.5)
    figure.savefig(path, dpi=100)
    plt.close(figure)
