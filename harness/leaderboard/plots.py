"""Leaderboard figures as SVG text: score vs runtime per task, per-sequence scores per group.

Figures are built on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state) inside
an ``rc_context`` that fixes ``svg.hashsalt`` and writes text as text; the SVG is saved without a
date. Together this makes regeneration from the same records byte-identical, so committed plots
only change when results do.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
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
        ax.set_xlabel("features + propagation, ms per frame (log scale)")
        ax.set_ylabel(f"{spec.primary} (%)")
        ax.set_title(f"{spec.label}: {spec.primary} vs runtime (reproduced runs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="protocol · hash · data", loc="best", fontsize=7, title_fontsize=7)
        return _svg(fig)


def sequence_metric(spec: TaskSpec, per_sequence: list[Mapping[str, Mapping[str, float]]]) -> str | None:
    """The metric to plot per sequence: the primary one if every sequence has it, else the first shared key."""
    shared: set[str] | None = None
    for table in per_sequence:
        for values in table.values():
            shared = set(values) if shared is None else shared & set(values)
    if not shared:
        return None
    return spec.primary if spec.primary in shared else sorted(shared)[0]


def per_sequence(spec: TaskSpec, group: Group, tables: list[Mapping[str, Mapping[str, float]]]) -> str | None:
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
                values = [100.0 * table[s][metric] if s in table else np.nan for s in sequences]
                ax.scatter(values, positions, marker=_MARKERS[index % len(_MARKERS)], color=f"C{index % 10}", label=label, zorder=3)
            ax.set_yticks(positions, sequences)
            ax.invert_yaxis()
            ax.set_xlabel(f"{metric} (%)")
            ax.grid(True, axis="x", alpha=0.3)
            ax.legend(loc="best", fontsize=7)
        else:
            fig = Figure(figsize=(1.5 + 0.9 * len(pairs), 4.0))
            ax = fig.add_subplot()
            ax.boxplot([[100.0 * v[metric] for v in table.values()] for _, table in pairs], showmeans=True)
            ax.set_xticks(np.arange(1, len(pairs) + 1), [label for label, _ in pairs], rotation=30, ha="right")
            ax.set_ylabel(f"{metric} (%) per sequence")
            ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(f"{spec.label}: per-sequence {metric}\n{group_label(group)}")
        return _svg(fig)
