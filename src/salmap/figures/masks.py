"""The CASM paper's Figure 1 layout: original, masked-in, masked-out and inpainted images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from salmap.errors import SalmapError
from salmap.inputs import check_images
from salmap.masks import discretize, inpaint_masked_out, masked_in, masked_out
from salmap.models.transforms import to_pixels


def mask_figure(
    images: torch.Tensor,
    maps: torch.Tensor,
    path: str | Path,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float = 1.0,
) -> Path:
    """Save the CASM paper's Figure 1 layout: rows original / masked-in / masked-out / inpainted.

    One column per image. `images` are pixels in [0, 1] (RGB or grey), or normalised images when
    `mean` and `std` are given (then masking zeroes in normalised space, shown as the mean colour).
    Masks are `discretize(maps, alpha)`. Returns the path written.
    """
    images = check_images(images)
    if (mean is None) != (std is None):
        raise SalmapError("give both mean and std (normalised images) or neither (pixels)")
    masks = discretize(maps, alpha).to(images.device)
    if mean is None:
        pixels = images.clamp(0, 1)
        rows = [pixels, masked_in(pixels, masks), masked_out(pixels, masks)]
    else:
        pixels = to_pixels(images, mean, std)
        rows = [
            pixels,
            to_pixels(masked_in(images, masks), mean, std),
            to_pixels(masked_out(images, masks), mean, std),
        ]
    rows.append(inpaint_masked_out(pixels, masks))
    titles = ["original", "masked-in", "masked-out", "inpainted"]
    count = images.shape[0]
    figure = Figure(figsize=(1.6 * count + 0.8, 6.6))
    axes = figure.subplots(4, count, squeeze=False)
    for row, (title, batch) in enumerate(zip(titles, rows, strict=True)):
        for column in range(count):
            axis = axes[row][column]
            picture = batch[column].detach().permute(1, 2, 0).cpu().numpy()
            if picture.shape[2] == 1:
                axis.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(picture)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
