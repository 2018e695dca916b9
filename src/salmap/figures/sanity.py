"""The sanity check's figure: map similarity against the blocks randomised."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from salmap.errors import SalmapError
from salmap.metrics.sanity import SanityResult

MEASURES = {
    "spearman_abs": "Spearman, absolute maps",
    "spearman": "Spearman, signed attributions",
    "ssim": "SSIM",
}


def plot_sanity(
    results: dict[str, SanityResult],
    path: str | Path,
    measures: Sequence[str] = ("spearman_abs", "spearman"),
) -> Path:
    """One panel per measure ("spearman_abs", "spearman" or "ssim"): per method, the mean over
    images (band: +- one std) against the blocks randomised. A method without signed attributions
    is left out of the "spearman" panel; a method whose maps turned constant says how many (their
    Spearman counted as 0) in its legend entry. Returns the path written."""
    unknown = [measure for measure in measures if measure not in MEASURES]
    if unknown or not measures:
        raise SalmapError(f"measures must be among {', '.join(MEASURES)}, got {list(measures)}")
    if not results:
        raise SalmapError("no sanity-check results to plot")
    figure = Figure(figsize=(7 * len(measures), 4))
    axes = figure.subplots(1, len(measures), squeeze=False)[0]
    steps = max((result.steps for result in results.values()), key=len)
    for axis, measure in zip(axes, measures, strict=True):
        for method, result in results.items():
            if measure == "spearman" and not result.signed:
                continue
            values = getattr(result, measure).double()
            mean = values.mean(dim=0).cpu()
            spread = values.std(dim=0, unbiased=False).cpu()
            ks = range(len(result.steps))
            constant = int(result.constant[:, 1:].sum())
            label = method + (f" ({constant} constant maps: 0)" if constant else "")
            axis.plot(ks, mean.numpy(), marker="o", label=label)
            axis.fill_between(ks, (mean - spread).numpy(), (mean + spread).numpy(), alpha=0.2)
        axis.set_xticks(range(len(steps)))
        axis.set_xticklabels(steps, rotation=45, ha="right")
        axis.set_xlabel("randomised down to block (cumulative, from the logits)")
        axis.set_title(MEASURES[measure])
        axis.set_ylim(-1.05 if measure.startswith("spearman") else -0.05, 1.05)
        axis.axhline(0, color="grey", linewidth=0.5)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
