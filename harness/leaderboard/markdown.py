"""Markdown and CSV renderings of the leaderboard.

The Markdown is for reading on GitHub: the at-a-glance summary and the legends first, then one
section per dataset (ranked tables per protocol/sequence group, their figures, the published numbers
folded away), then the smoke runs, folded away and unranked. The CSV is for scripts: one flat table
with every row, every metric and every detail, no generated-at line, so it is byte-identical
whenever the records are.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.leaderboard.cells import (
    Column,
    csv_value,
    method_label,
    reported_columns,
    reproduced_columns,
    runtime_letters,
    smoke_columns,
)
from harness.leaderboard.document import GENERATED_PREFIX, INTRO, Leaderboard

CSV_LEADING = [
    "kind", "section", "dataset", "smoke", "smoke_reasons", "task", "protocol", "protocol_hash", "protocol_group",
    "data", "sequences", "rank", "method", "variant", "weights", "backbone", "parameters", "pretraining", "checkpoint",
    "checkpoint_sha256",
]  # fmt: skip
CSV_TRAILING = [
    "primary_metric", "delta_vs_reported", "delta_pts", "features_ms_per_frame", "propagation_ms_per_frame",
    "ms_per_frame", "stages", "adapt_s_per_video", "total_s", "peak_rss_mib", "peak_gpu_mib", "frames", "device",
    "runtime_class", "threads", "load_avg", "older_code", "dirty", "package_version", "date", "commit", "data_root",
    "source", "confirmed", "reported_id", "record",
]  # fmt: skip
SUMMARY_HEADERS = ("dataset", "best ranked run", "score %", "sequences", "lead over the runner-up",
                   "best published, same protocol group", "vs published")  # fmt: skip


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(frame: pd.DataFrame, columns: list[Column]) -> list[str]:
    lines = [
        "| " + " | ".join(_escape(c.header) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            text = _escape(column.cell(row)[0])
            if column.role == "method" and row.get("record"):
                text = f"[{text}](<{row['record']}>)"  # <...> survives spaces and parentheses in paths
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def settings_text(settings: dict[str, Any]) -> str:
    """Resolved protocol settings on one line (``context=20, topk=10, ...``), keys sorted."""
    return json.dumps(settings, sort_keys=True, separators=(", ", "=")).strip("{}").replace('"', "")


def runtime_classes(frame: pd.DataFrame) -> list[str]:
    """Runtime classes present in ``frame`` (reproduced rows), sorted."""
    if frame.empty or "runtime_class" not in frame:
        return []
    return sorted({str(c) for c in frame["runtime_class"].dropna() if c})


def legends(board: Leaderboard) -> tuple[list[str], list[str]]:
    """(runtime classes as "(a) label", protocol groups as "A (≈ crw): description"), for both renderers."""
    repro = board.frame[board.frame["kind"] == "reproduced"] if not board.frame.empty else board.frame
    letters = runtime_letters(runtime_classes(repro))
    runtimes = [f"({letter}) {klass}" for klass, letter in letters.items()]
    groups = [f"{g.name}{f' (≈ {g.family})' if g.family else ''}: {g.description}" for g in board.protocol_groups]
    return runtimes, groups


def render_markdown(board: Leaderboard) -> str:
    """Summary and legends, then per dataset its ranked tables and figures, then the smoke runs."""
    repro = board.frame[board.frame["kind"] == "reproduced"]
    letters = runtime_letters(runtime_classes(repro))
    runtimes, protocol_groups = legends(board)
    lines = ["# Leaderboard", "", f"{GENERATED_PREFIX}{board.generated_at}", "", board.sources, "", INTRO, ""]
    lines += ["## At a glance", "", "| " + " | ".join(SUMMARY_HEADERS) + " |", "|" + "---|" * len(SUMMARY_HEADERS)]
    for s in board.summaries:
        cells = (f"[{s.dataset}](#{s.anchor})", s.best, s.score + (f" ({s.primary})" if s.score != "–" else ""),
                 s.sequences, s.lead, s.published, s.versus_published)
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    lines.append("")
    if runtimes:
        lines += ["Runtime classes (ms/frame columns compare one class only): " + "; ".join(runtimes), ""]
    if protocol_groups:
        lines += ["Protocol groups of published numbers (`results/reported.yaml`):", ""]
        lines += [f"- {_escape(text)}" for text in protocol_groups] + [""]
    for section, task in board.sections:
        spec = board.specs[task]
        lines += [f"## {section}", ""]
        section_groups = board.section_groups(section)
        if not section_groups:
            smoke = int((board.smoke()["section"] == section).sum())
            lines += [f"No ranked run{f' ({smoke} smoke runs below)' if smoke else ''}.", ""]
        for group in section_groups:
            classes = runtime_classes(group.frame)
            lines += [
                f"### Protocol `{group.protocol}` · hash `{group.protocol_hash}` · {group.data}",
                "",
                f"Settings: {settings_text(group.settings)}" if group.settings else "Settings: not recorded",
                "",
                *md_table(group.frame, reproduced_columns(spec, classes, letters)),
                "",
            ]
            strips = [f"[{_escape(method_label(row))} {j + 1}](<{path}>)" for _, row in group.frame.iterrows()
                      for j, path in enumerate(row["visualizations"])]  # fmt: skip
            if strips:
                lines += ["Qualitative strips: " + ", ".join(strips), ""]
            lines += [f"![{plot.title}]({plot.path})\n" for plot in board.section_plots(section, group.key)]
        lines += [f"![{plot.title}]({plot.path})\n" for plot in board.section_plots(section)]
        reported = board.reported(section)
        if not reported.empty:
            lines += [f"<details><summary>Published numbers for {section} ({len(reported)}, not ranked)</summary>", "",
                      *md_table(reported, reported_columns(spec)), "", "</details>", ""]  # fmt: skip
    smoke = board.smoke()
    if not smoke.empty:
        lines += ["## Smoke runs (not ranked)", "",
                  f"<details><summary>{len(smoke)} runs on too little data to rank (reasons in the table)</summary>", ""]
        for task in dict.fromkeys(smoke["home_task"]):
            rows = smoke[smoke["home_task"] == task]
            lines += md_table(rows, smoke_columns(board.specs[task], runtime_classes(rows), letters)) + [""]
        lines += ["</details>", ""]
    if board.sweeps:
        lines += ["## Sweeps (not ranked)", "", "Ablation reports of `harness sweep` (knobs varied on purpose):", ""]
        lines += [f"- [{_escape(name)}](<{path}>)" for name, path in board.sweeps] + [""]
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
