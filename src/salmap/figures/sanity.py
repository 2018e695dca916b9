"""The sanity check's figure: map similarity against the blocks randomised."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from salmap.errors import SalmapError
from salmap.metrics.sanity import SanityResult


def plot_sanity(results: dict[str, SanityResult], path: str | Path, measure: str = "spearman_abs") -> Path:
    """Plot, per method, the mean over images (band: +- one std) of `measure` ("spearman",
    "spearman_abs" or "ssim") against the blocks randomised; returns the path written."""
    if measure not in ("spearman", "spearman_abs", "ssim"):
        raise SalmapError(f"measure must be spearman, spearman_abs or ssim, got {measure!r}")
    if not results:
        raise SalmapError("no sanity-check results to plot")
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    steps: list[str] = []
    for method, result in results.items():
        values = getattr(result, measure).double()
        mean = values.nanmean(dim=0).cpu()
        spread = (values - mean.to(values.device)).pow(2).nanmean(dim=0).sqrt().cpu()
        ks = range(len(result.steps))
        axis.plot(ks, mean.numpy(), marker="o", label=method)
        axis.fill_between(ks, (mean - spread).numpy(), (mean + spread).numpy(), alpha=0.2)
        steps = result.steps if len(result.steps) > len(steps) else steps
    axis.set_xticks(range(len(steps)))
    axis.set_xticklabels(steps, rotation=45, ha="right")
    axis.set_xlabel("randomised down to block (cumulative, from the logits)")
    axis.set_ylabel(measure.replace("_", " "))
    axis.set_ylim(-1.05 if measure.startswith("spearman") else -0.05, 1.05)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
