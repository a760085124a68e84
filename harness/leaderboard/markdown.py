"""Markdown and CSV renderings of the leaderboard.

The Markdown is for reading on GitHub: one section per task, one ranked table per
(protocol hash, data) group, then the published numbers of that task, unranked. The CSV is for
scripts: one flat table with every row and every metric, no generated-at line, so it is
byte-identical whenever the records are.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.leaderboard.cells import Column, csv_value, reported_columns, reproduced_columns
from harness.leaderboard.document import GENERATED_PREFIX, Leaderboard

INTRO = (
    "Scores are percentages (records hold fractions). **reproduced** rows were measured by "
    "`harness run`; **reported** rows are published numbers copied from the cited source "
    "(`results/reported.yaml`), with † where the source study could not confirm the number in a "
    "primary table. Runs are ranked only against runs with the same task, protocol hash and data: "
    "numbers under different protocol hashes are not comparable. Δ is reproduced − reported, in "
    "points, against published numbers for the same weights and protocol family."
)

CSV_LEADING = [
    "kind", "task", "protocol", "protocol_hash", "protocol_group", "data", "rank", "method", "backbone",
    "parameters", "pretraining", "checkpoint", "checkpoint_sha256",
]  # fmt: skip
CSV_TRAILING = [
    "primary_metric", "delta_vs_reported", "delta_pts", "features_ms_per_frame", "propagation_ms_per_frame",
    "ms_per_frame", "adapt_s_per_video", "total_s", "peak_rss_mib", "peak_gpu_mib", "frames", "device", "date",
    "commit", "source", "confirmed", "reported_id", "record",
]  # fmt: skip


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(frame: pd.DataFrame, columns: list[Column]) -> list[str]:
    lines = [
        "| " + " | ".join(_escape(c.header) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_escape(c.cell(row)[0]) for c in columns) + " |")
    return lines


def settings_text(settings: dict[str, Any]) -> str:
    """Resolved protocol settings on one line (``context=20, topk=10, ...``), keys sorted."""
    return json.dumps(settings, sort_keys=True, separators=(", ", "=")).strip("{}").replace('"', "")


def render_markdown(board: Leaderboard) -> str:
    """Per task: a ranked table per (protocol hash, data) group with its figures, then published numbers."""
    lines = ["# Leaderboard", "", f"{GENERATED_PREFIX}{board.generated_at}", "", board.sources, "", INTRO, ""]
    for task in board.tasks:
        reported = board.reported(task)
        spec = board.specs[task]
        lines += [f"## {spec.label} (`{task}`)", ""]
        for group in board.task_groups(task):
            lines += [
                f"### Reproduced · protocol `{group.protocol}` · hash `{group.protocol_hash}` · data {group.data}",
                "",
                f"Settings: {settings_text(group.settings)}" if group.settings else "Settings: not recorded",
                "",
                *md_table(group.frame, reproduced_columns(spec)),
                "",
            ]
            # <...> link targets survive spaces and parentheses in run folder names.
            records = [f"[{i + 1}](<{path}>)" for i, path in enumerate(group.frame["record"])]
            lines += ["Records (by rank): " + ", ".join(records), ""]
            strips = [
                f"[{_escape(row['method'])} {j + 1}](<{path}>)"
                for _, row in group.frame.iterrows()
                for j, path in enumerate(row["visualizations"])
            ]
            if strips:
                lines += ["Qualitative strips: " + ", ".join(strips), ""]
            lines += [f"![{plot.title}]({plot.path})\n" for plot in board.task_plots(task, group.key)]
        lines += [f"![{plot.title}]({plot.path})\n" for plot in board.task_plots(task)]
        if not reported.empty:
            lines += ["### Reported (published numbers, not ranked)", "", *md_table(reported, reported_columns(spec)), ""]
    if board.skipped:
        lines += ["## Skipped records", "", "These record files were found but could not be used:", ""]
        lines += [f"- `{path}`: {_escape(reason)}" for path, reason in board.skipped]
        lines.append("")
    return "\n".join(lines)


def render_csv(board: Leaderboard) -> str:
    """Every row, every metric (percent), fixed column order; empty cells where not applicable."""
    columns = CSV_LEADING + board.metric_keys + CSV_TRAILING
    cells = {c: [csv_value(board.frame[c].iloc[i]) if c in board.frame else "" for i in range(len(board.frame))] for c in columns}
    return pd.DataFrame(cells, columns=columns).to_csv(index=False, lineterminator="\n")
