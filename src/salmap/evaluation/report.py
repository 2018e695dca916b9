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
from .protocols import Protocol, Table
from .runner import Evaluation

BY_KEY = {column.key: column for column in COLUMNS}


def summarize(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    """One number per metric and method (fractions, not percentages)."""
    return {name: result.summary(evaluation.labels) for name, result in evaluation.methods.items()}


def report_tables(protocol: Protocol) -> tuple[Table, ...]:
    """The protocol's tables, or one per column group (the columns shown in tables)."""
    if protocol.tables is not None:
        return protocol.tables
    return tuple(
        Table(title, tuple(c.key for c in COLUMNS if c.group == group and c.in_table))
        for group, title in GROUPS.items()
    )


def markdown_tables(summary: dict[str, dict[str, float]], protocol: Protocol) -> dict[str, str]:
    """One Markdown table per table of the protocol, by title, one row per method (percentages
    where marked); columns no method has are left out, and so are tables left empty."""
    tables = {}
    for table in report_tables(protocol):
        present = [BY_KEY[key] for key in table.keys if any(key in row for row in summary.values())]
        if not present:
            continue
        lines = ["| method | " + " | ".join(column.heading for column in present) + " |"]
        lines.append("|---" * (len(present) + 1) + "|")
        for name, row in summary.items():
            cells = " | ".join(column.cell(row.get(column.key)) for column in present)
            lines.append(f"| {name} | {cells} |")
        tables[table.title] = "\n".join(lines)
    return tables


def _fills(evaluation: Evaluation) -> str:
    """What removed pixels become, and which class deletion / insertion score."""
    protocol = evaluation.protocol
    text = "Masked images: binary masks by the CASM rule, masked pixels black (0 before normalisation)."
    if Causal in protocol.accumulators:
        scored = (
            "the ground-truth class (the class the maps explain)"
            if protocol.causal_target == "label"
            else "the model's top-1 class on the clean image (RISE)"
        )
        text += (
            f" Deletion sets pixels to {evaluation.source.fill:.3f} in normalised space; deletion and "
            f"insertion score the softmax probability of {scored}."
        )
    return text


def table_has_masked_images(table: str) -> bool:
    """Whether a report table holds the masked-image columns (the reference rows follow it)."""
    return BY_KEY["masked_out"].heading in table


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
    """Write report.md (stating the protocol), metrics.json, metrics.csv, gallery.png and, when
    the protocol has those metrics, curves.png and sanity.png; return the summary and the report
    text."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(evaluation)
    accuracy = float((evaluation.predictions == evaluation.labels).float().mean())
    protocol = evaluation.protocol
    tables = markdown_tables(summary, protocol)
    parts = [
        f"# {title}",
        "",
        f"Data: `{evaluation.source.name}`, {len(evaluation.labels)} images. "
        f"Model: `{evaluation.model_name}` (top-1 accuracy {100 * accuracy:.1f}%). "
        f"Maps explain the ground-truth class. Wall time {seconds:.0f} s.",
        "",
        protocol.statement,
    ]
    skipped = evaluation.source.skipped
    if skipped:
        parts += [
            "",
            f"{len(skipped)} images left out (an unreadable image or box file, or no box inside the "
            "centre crop), listed with the reason in `metrics.json`.",
        ]
    parts += ["", _fills(evaluation)]
    for heading, table in tables.items():
        parts += ["", f"## {heading}", "", table]
        if table_has_masked_images(table):
            parts += ["", "Reference rows:", "", reference_rows(next(iter(summary.values())))]
    figures = ["`gallery.png` (green: ground truth, red: CASM-rule box)"]
    if Causal in protocol.accumulators:
        figures.append("`curves.png`")
    if Sanity in protocol.accumulators:
        figures.append("`sanity.png`")
    parts += ["", "Figures: " + ", ".join(figures) + "."]
    text = "\n".join(parts) + "\n"
    write_text(out / "report.md", text)
    document = {
        "data": evaluation.source.name,
        "model": evaluation.model_name,
        "protocol": protocol.name,
        "causal_target": protocol.causal_target if Causal in protocol.accumulators else None,
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
    if Causal in evaluation.protocol.accumulators:
        count = len(evaluation.labels)
        causal = {name: result.of(Causal) for name, result in evaluation.methods.items()}
        curves = {
            name: {kind: curve / count for kind, curve in found.curves.items()}
            for name, found in causal.items()
        }
        fractions = next(iter(causal.values())).fractions
        write_atomically(out / "curves.png", lambda path: write_curves(fractions, curves, path))
    if Sanity not in evaluation.protocol.accumulators:
        return
    sanity = {
        name: result.of(Sanity).result
        for name, result in evaluation.methods.items()
        if result.of(Sanity).result is not None
    }
    if sanity:
        write_atomically(out / "sanity.png", lambda path: plot_sanity(sanity, path))
