"""Summaries of an `Evaluation`: tables (Markdown, JSON, CSV) and figures."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from salmap import metrics
from salmap.figures import plot_sanity, write_curves, write_gallery
from salmap.io import write_atomically, write_json, write_text

from .accumulators import COLUMNS, Causal, Sanity
from .columns import GROUPS
from .runner import Evaluation

BY_KEY = {column.key: column for column in COLUMNS}


def summarize(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    """One number per metric and method (fractions, not percentages)."""
    return {name: result.summary(evaluation.labels) for name, result in evaluation.methods.items()}


def markdown_tables(summary: dict[str, dict[str, float]]) -> dict[str, str]:
    """One Markdown table per group of columns, one row per method (percentages where marked)."""
    tables = {}
    for group in GROUPS:
        present = [
            column
            for column in COLUMNS
            if column.group == group
            and column.in_table
            and any(column.key in row for row in summary.values())
        ]
        if not present:
            continue
        lines = ["| method | " + " | ".join(column.heading for column in present) + " |"]
        lines.append("|---" * (len(present) + 1) + "|")
        for name, row in summary.items():
            cells = " | ".join(column.cell(row.get(column.key)) for column in present)
            lines.append(f"| {name} | {cells} |")
        tables[group] = "\n".join(lines)
    return tables


def reference_rows(summary: dict[str, float]) -> str:
    """Masked-image accuracy of the trivial masks (all zero, all one), the reference rows."""
    lines = ["| mask | masked-in top-1 | masked-out top-1 | inpainted top-1 |", "|---|---|---|---|"]
    for kind, title in (("zeros", "all zero"), ("ones", "all one")):
        cells = [
            BY_KEY[f"{kind}_{variant}"].cell(summary[f"{kind}_{variant}"]) for variant in metrics.VARIANTS
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(
    evaluation: Evaluation, out: Path, title: str, seconds: float
) -> tuple[dict[str, dict[str, float]], str]:
    """Write report.md, metrics.json, metrics.csv, gallery.png, curves.png and sanity.png; return
    the summary and the report text."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(evaluation)
    accuracy = float((evaluation.predictions == evaluation.labels).float().mean())
    tables = markdown_tables(summary)
    parts = [
        f"# {title}",
        "",
        f"Data: `{evaluation.source.name}`, {len(evaluation.labels)} images. "
        f"Model: `{evaluation.model_name}` (top-1 accuracy {100 * accuracy:.1f}%). "
        f"Maps explain the ground-truth class. Wall time {seconds:.0f} s.",
        "",
        "Box rules are fixed (CAM: largest region above 20% of the max; CASM: m >= mean(m), largest "
        "4-connected component; GraphCut: seeds above the 95th / below the 30th percentile). BoxAcc "
        "chooses its threshold on the other half of the images (two folds); MaxBoxAcc takes the best "
        "threshold on the images it scores, an upper bound (Choe et al. 2020). Removed pixels (deletion, "
        f"masked images) take the value {evaluation.source.fill:.3f} in normalised space.",
    ]
    skipped = evaluation.source.skipped
    if skipped:
        parts += [
            "",
            f"{len(skipped)} images left out (an unreadable image or box file, or no box inside the "
            "centre crop), listed with the reason in `metrics.json`.",
        ]
    for group, table in tables.items():
        parts += ["", f"## {GROUPS[group]}", "", table]
        if group == "classification":
            parts += ["", "Reference rows:", "", reference_rows(next(iter(summary.values())))]
    parts += [
        "",
        "Figures: `gallery.png` (green: ground truth, red: CASM-rule box), `curves.png`, `sanity.png`.",
    ]
    text = "\n".join(parts) + "\n"
    write_text(out / "report.md", text)
    document = {
        "data": evaluation.source.name,
        "model": evaluation.model_name,
        "images": len(evaluation.labels),
        "skipped": [{"image": str(path), "reason": reason} for path, reason in skipped],
        "accuracy": accuracy,
        "seconds": seconds,
        "methods": summary,
        "columns": {
            column.key: {
                "title": column.title,
                "group": column.group,
                "percent": column.percent,
                "better": column.better,
            }
            for column in COLUMNS
        },
    }
    write_json(out / "metrics.json", document)
    keys = [column.key for column in COLUMNS if any(column.key in row for row in summary.values())]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["method", *keys])
    for method, row in summary.items():
        writer.writerow([method, *(row.get(key, "") for key in keys)])
    write_text(out / "metrics.csv", table.getvalue())
    _write_figures(evaluation, out)
    return summary, text


def _write_figures(evaluation: Evaluation, out: Path) -> None:
    """gallery.png, curves.png and, when any method had the sanity check, sanity.png."""
    gallery = {
        name: tuple(torch.cat(parts) for parts in zip(*result.gallery, strict=True))
        for name, result in evaluation.methods.items()
    }
    write_atomically(
        out / "gallery.png",
        lambda path: write_gallery(evaluation.gallery_pixels, evaluation.gallery_boxes, gallery, path),
    )
    count = len(evaluation.labels)
    causal = {name: result.of(Causal) for name, result in evaluation.methods.items()}
    curves = {
        name: {kind: curve / count for kind, curve in found.curves.items()} for name, found in causal.items()
    }
    fractions = next(iter(causal.values())).fractions
    write_atomically(out / "curves.png", lambda path: write_curves(fractions, curves, path))
    sanity = {
        name: result.of(Sanity).result
        for name, result in evaluation.methods.items()
        if result.of(Sanity).result is not None
    }
    if sanity:
        write_atomically(out / "sanity.png", lambda path: plot_sanity(sanity, path))
