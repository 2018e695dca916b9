"""The saliency-guided attack's figure: per image, each method's perturbation and result."""

from __future__ import annotations

from pathlib import Path

import torch

from salmap.attack import AttackResult
from salmap.models import LoadedModel


def _label(loaded: LoadedModel, index: int) -> str:
    name = loaded.class_names[index]
    return name if len(name) <= 18 else name[:17] + "."


def save_attack_figure(
    loaded: LoadedModel, x: torch.Tensor, results: dict[str, AttackResult], names: list[str], path: Path
) -> None:
    """One row per image: the clean image, then per method the perturbation (mid-grey is 0,
    scaled so its 99th percentile of |delta| fills the range) and the adversarial image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .text import drawable, font_families

    cols = 1 + 2 * len(results)
    figure, axes = plt.subplots(len(names), cols, figsize=(1.9 * cols, 2.2 * len(names)), squeeze=False)
    clean = loaded.denormalize(x)
    for r, name in enumerate(names):
        first = next(iter(results.values()))
        cells = [(clean[r], f"{name}\n{_label(loaded, int(first.clean_prediction[r]))}")]
        for method, result in results.items():
            delta = result.perturbation[r]
            peak = float(delta.abs().flatten().quantile(0.99))
            shown = (0.5 + 0.5 * delta / peak).clamp(0, 1) if peak > 0 else torch.full_like(delta, 0.5)
            outcome = f"{int(result.iterations[r])} it" if bool(result.success[r]) else "failed"
            cells.append((shown, f"{method}: L2 {float(result.l2[r]):.2f}\n{outcome}"))
            cells.append(
                (
                    loaded.denormalize(result.adversarial[r : r + 1])[0],
                    f"-> {_label(loaded, int(result.prediction[r]))}",
                )
            )
        for c, (picture, title) in enumerate(cells):
            axis = axes[r][c]
            array = picture.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
            axis.imshow(array[..., 0] if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=1)
            axis.set_title(drawable(title), fontsize=7, fontfamily=list(font_families()))
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
