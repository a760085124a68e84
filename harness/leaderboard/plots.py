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

from harness.leaderboard.cells import is_missing
from harness.leaderboard.spec import TaskSpec
from harness.leaderboard.table import Group

_RC = {
    "svg.hashsalt": "crwbench-leaderboard",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_MAX_SEQUENCE_ROWS = 40


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def group_label(group: Group) -> str:
    return f"{group.protocol} · {group.protocol_hash} · {group.data}"


def run_labels(frame: pd.DataFrame) -> list[str]:
    """Method names, disambiguated by checkpoint or record when a method appears twice."""
    methods = list(frame["method"])
    labels = []
    for i, row in frame.reset_index(drop=True).iterrows():
        label = row["method"]
        if methods.count(label) > 1:
            label += f" [{row['checkpoint'] or f'run {i + 1}'}]"
        labels.append(label)
    return labels


def score_vs_runtime(spec: TaskSpec, groups: list[Group]) -> str | None:
    """Primary metric against features + propagation ms/frame (log x), one marker style per group.

    Returns None when no run of the task has both timings (nothing to plot).
    """
    points = []
    for index, group in enumerate(groups):
        frame = group.frame
        usable = frame[frame["ms_per_frame"].map(lambda v: not is_missing(v) and v > 0)]
        usable = usable[usable["primary_value"].map(lambda v: not is_missing(v))]
        if not usable.empty:
            points.append((index, group, usable))
    if not points:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 4.0))
        ax = fig.add_subplot()
        for index, group, frame in points:
            ax.scatter(
                frame["ms_per_frame"].astype(float),
                frame["primary_value"].astype(float),
                marker=_MARKERS[index % len(_MARKERS)],
                color=f"C{index % 10}",
                label=group_label(group),
                zorder=3,
            )
            for x, y, label in zip(frame["ms_per_frame"], frame["primary_value"], run_labels(frame), strict=True):
                ax.annotate(label, (float(x), float(y)), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xscale("log")
        # Plain numbers on both major and minor ticks: runtimes often span less than a decade.
        ax.xaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        ax.margins(x=0.2, y=0.1)
        ax.set_xlabel("features + propagation, ms per frame (log scale)")
        ax.set_ylabel(f"{spec.primary} (%)")
        ax.set_title(f"{spec.label}: {spec.primary} vs runtime (reproduced runs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="protocol · hash · data", loc="best", fontsize=7, title_fontsize=7)
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
    with matplotlib.rc_context(_RC):
        if len(sequences) <= _MAX_SEQUENCE_ROWS:
            fig = Figure(figsize=(6.4, 1.2 + 0.22 * len(sequences)))
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
            ax.legend(loc="best", fontsize=7)
        else:
            fig = Figure(figsize=(1.5 + 0.9 * len(pairs), 4.0))
            ax = fig.add_subplot()
            data = [[_percent(v[metric]) for v in table.values() if v[metric] is not None] for _, table in pairs]
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(np.arange(1, len(pairs) + 1), [label for label, _ in pairs], rotation=30, ha="right")
            ax.set_ylabel(f"{metric} (%) per sequence")
            ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(f"{spec.label}: per-sequence {metric}\n{group_label(group)}")
        return _svg(fig)
