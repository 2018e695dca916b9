"""The evaluation's figures: a gallery of maps with their boxes, and the causal curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from salmap.boxes import draw_boxes


def write_gallery(
    pixels: torch.Tensor,
    truth: Sequence[torch.Tensor],
    maps: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    path: Path,
) -> None:
    """Images x methods: each image `pixels[r]` (RGB in [0, 1]) with its ground-truth boxes
    `truth[r]` in green, then per method its map `maps[method][0][r]` over the image with its
    box `maps[method][1][r]` in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    rows = len(pixels)
    figure, axes = plt.subplots(
        rows, len(maps) + 1, figsize=(1.9 * (len(maps) + 1), 1.9 * rows), squeeze=False
    )
    for r in range(rows):
        axes[r][0].imshow(draw_boxes(pixels[r], truth[r]))
        for c, (method, (saliency, boxes)) in enumerate(maps.items(), start=1):
            heat = colormaps["inferno"](saliency[r].numpy())[..., :3]
            blend = 0.45 * pixels[r].permute(1, 2, 0).numpy() + 0.55 * heat
            picture = draw_boxes(torch.from_numpy(blend).permute(2, 0, 1).float(), truth[r])
            axes[r][c].imshow(draw_boxes(picture, boxes[r : r + 1], colors=((255, 0, 0),)))
            if r == 0:
                axes[r][c].set_title(method, fontsize=9)
        axes[0][0].set_title("image", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_curves(
    fractions: torch.Tensor, curves: Mapping[str, Mapping[str, torch.Tensor]], path: Path
) -> None:
    """Mean deletion and insertion curves (`curves[method]["deletion" | "insertion"]`) of every
    method against the fraction of pixels changed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for method, pair in curves.items():
        for axis, name in zip(axes, ("deletion", "insertion"), strict=True):
            axis.plot(fractions.numpy(), pair[name].numpy(), label=method)
    for axis, name in zip(axes, ("deletion (lower is better)", "insertion (higher is better)"), strict=True):
        axis.set_title(name)
        axis.set_xlabel("fraction of pixels changed")
        axis.set_ylabel("probability of the class")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
