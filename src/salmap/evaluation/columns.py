"""A column of the evaluation: a metric's key (in metrics.json and metrics.csv), title, group (a
table of report.md), whether it is a percentage, and which way is better. The accumulators that
compute the metrics declare their columns (`salmap.evaluation.accumulators`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One metric of the evaluation, one number per method."""

    key: str
    title: str
    group: str
    percent: bool = False
    better: str | None = None  # "lower", "higher", or None (a statistic to read, not to rank)
    in_table: bool = True

    @property
    def heading(self) -> str:
        """The title with an arrow saying which way is better."""
        arrow = {"lower": " ↓", "higher": " ↑"}.get(self.better or "", "")
        return self.title + arrow

    def cell(self, value: float | None) -> str:
        """The value as written in report.md: a percentage with one decimal, or three decimals."""
        if value is None or value != value:
            return "–"
        return f"{100 * value:.1f}" if self.percent else f"{value:.3f}"


GROUPS = {
    "localisation": "Localisation (percent; LE/OM: IoU > 0.5 with a ground-truth box)",
    "evidence": "Faithfulness and evidence",
    "masks": "Mask statistics (continuous maps)",
    "classification": "Classification of masked images by the model (percent, discretised maps, "
    "b = m >= mean(m))",
    "sanity": "Sanity check (cascading randomisation, from the logits down)",
}
