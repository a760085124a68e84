"""Leaderboard figures as SVG text: score vs runtime per task, per-sequence scores per group.

Figures are built on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state) inside
an ``rc_context`` that fixes ``svg.hashsalt`` and writes text as text; the SVG is saved without a
date. Together this makes regeneration from the same records byte-identical, so committed plots
only change when results do.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from harness.leaderboard.cells import is_missing, run_name
from harness.leaderboard.spec import TaskSpec
from harness.leaderboard.table import Group

# Sizes in points; the SVG is shown at its native size (1 pt = 4/3 CSS px), so 10 pt reads as 13 px.
_RC = {
    "svg.hashsalt": "crwbench-leaderboard",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
}
_LABEL_SIZE = 9
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_MAX_SEQUENCE_ROWS = 40


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def group_label(group: Group) -> str:
    return f"{group.protocol} · {group.protocol_hash} · {group.data}"


def run_labels(frame: pd.DataFrame) -> list[str]:
    """``method [variant] · weights``; runs that would share a label get the first of checkpoint, task read,
    commit that tells them apart (a row number as the last resort)."""
    rows = [row for _, row in frame.iterrows()]
    base = [run_name(row) for row in rows]
    labels = []
    for i, (label, row) in enumerate(zip(base, rows, strict=True)):
        twins = [r for b, r in zip(base, rows, strict=True) if b == label]
        if len(twins) > 1:
            for key, prefix in (("checkpoint", ""), ("task", "task "), ("commit", "")):
                values = [str(r.get(key) or "") for r in twins]
                if all(values) and len(set(values)) == len(values):
                    label += f" ({prefix}{row[key]})"
                    break
            else:
                label += f" (run {i + 1})"
        labels.append(label)
    return labels


def _legend_outside(ax: Any, title: str | None = None) -> None:
    """Legend to the right of the axes: it never covers a data point."""
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def plain_log_axis(axis: Any) -> None:
    """Log scale with plain-number ticks at 1-2-5 steps and no minor labels (no "2e+043e+04")."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
    axis.set_minor_locator(ticker.NullLocator())


def score_vs_runtime(spec: TaskSpec, klass: str, rows: pd.DataFrame,
                     references: list[tuple[str, float]] = ()) -> str | None:
    """Primary metric against features + propagation ms/frame (log x) for runs of ONE runtime class
    (device + threads); one marker style per protocol/data group, one label per run.

    ``references``: published numbers drawn as horizontal lines (pass them only where comparable).
    Returns None with fewer than two runs: a single point says nothing about a trade-off.
    """
    usable = rows[rows["ms_per_frame"].map(lambda v: not is_missing(v) and v > 0)
                  & rows["primary_value"].map(lambda v: not is_missing(v))]
    if len(usable) < 2:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.0, 4.2))
        ax = fig.add_subplot()
        for index, (_, frame) in enumerate(usable.groupby(["protocol", "protocol_hash", "data"], sort=True)):
            first = frame.iloc[0]
            ax.scatter(frame["ms_per_frame"].astype(float), frame["primary_value"].astype(float),
                       marker=_MARKERS[index % len(_MARKERS)], color=f"C{index % 10}", zorder=3,
                       label=f"{first['protocol']} · {first['protocol_hash']} · {first['data']}")
            for x, y, label in zip(frame["ms_per_frame"], frame["primary_value"], run_labels(frame), strict=True):
                ax.annotate(label, (float(x), float(y)), textcoords="offset points", xytext=(5, 4), fontsize=_LABEL_SIZE)
        for i, (label, value) in enumerate(references):
            ax.axhline(value, color="0.5", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=f"published: {label}")
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)
        ax.margins(x=0.25, y=0.12)
        ax.set_xlabel("features + propagation, ms per frame (log scale)")
        ax.set_ylabel(f"{spec.primary} (%)")
        ax.set_title(f"{spec.primary} vs runtime on {klass}")
        ax.grid(True, which="major", alpha=0.3)
        _legend_outside(ax, "protocol · hash · data")
        return _svg(fig)


def _fraction_or_none(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and -1.0 <= value <= 1.0


def sequence_metric(spec: TaskSpec, per_sequence: list[Mapping[str, Mapping[str, Any]]]) -> str | None:
    """The metric to plot per sequence: the first of the task's shown metrics that every sequence
    has (the primary one where present), else the alphabetically first shared key.

    Only keys holding fractions (or null) everywhere qualify: per-sequence blocks also carry frame
    counts, object counts and confusion matrices, which are not scores.
    """
    shared: set[str] | None = None
    for table in per_sequence:
        for values in table.values():
            keys = {k for k, v in values.items() if _fraction_or_none(v)}
            shared = keys if shared is None else shared & keys
    if not shared:
        return None
    return next((key for key in spec.shown if key in shared), sorted(shared)[0])


def _percent(value: Any) -> float:
    return np.nan if value is None else 100.0 * float(value)


def per_sequence(spec: TaskSpec, group: Group, tables: list[Mapping[str, Mapping[str, Any]]]) -> str | None:
    """Per-sequence scores of each run in ``group`` (``tables`` in the group frame's row order).

    Up to 40 sequences: a dot plot, one row per sequence. More (JHMDB has 268 clips): one box per
    run, since a row per clip would be unreadable.
    """
    pairs = [(label, table) for label, table in zip(run_labels(group.frame), tables, strict=True) if table]
    metric = sequence_metric(spec, [table for _, table in pairs])
    if metric is None:
        return None
    sequences = sorted({seq for table in tables for seq in table})
    if len(sequences) < 2:
        return None  # one point per run: the table already says it
    with matplotlib.rc_context(_RC):
        if len(sequences) <= _MAX_SEQUENCE_ROWS:
            fig = Figure(figsize=(7.0, 1.4 + 0.28 * len(sequences)))
            ax = fig.add_subplot()
            positions = np.arange(len(sequences))
            for index, (label, table) in enumerate(pairs):
                values = [_percent(table[s][metric]) if s in table else np.nan for s in sequences]
                ax.scatter(values, positions, marker=_MARKERS[index % len(_MARKERS)], color=f"C{index % 10}", label=label, zorder=3)
            ax.set_yticks(positions, sequences)
            ax.margins(x=0.05, y=0.5 / max(1, len(sequences)))
            ax.invert_yaxis()
            ax.set_xlabel(f"{metric} (%)")
            ax.grid(True, axis="x", alpha=0.3)
            _legend_outside(ax)
        else:
            fig = Figure(figsize=(1.5 + 0.9 * len(pairs), 4.0))
            ax = fig.add_subplot()
            data = [[_percent(v[metric]) for v in table.values() if v[metric] is not None] for _, table in pairs]
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(np.arange(1, len(pairs) + 1), [label for label, _ in pairs], rotation=30, ha="right")
            ax.set_ylabel(f"{metric} (%) per sequence")
            ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(f"{group.section}: per-sequence {metric}\n{group.protocol} · {group.protocol_hash}")
        return _svg(fig)
