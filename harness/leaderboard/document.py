"""What the Markdown and HTML renderers receive: everything already computed and ordered.

Renderers only format; all decisions (grouping, ranking, which plots exist) are made before, in
:mod:`harness.leaderboard.build`, so the two outputs cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.leaderboard.spec import TaskSpec
from harness.leaderboard.table import Group

GENERATED_PREFIX = "Generated at: "


@dataclass(frozen=True)
class Plot:
    """One figure: where it is written (relative to the output folder) and its SVG text."""

    path: str
    title: str
    svg: str
    group: str | None = None  # Group.key for a per-group figure, None for a whole-task figure


@dataclass
class Leaderboard:
    """The complete leaderboard, ready to render."""

    frame: pd.DataFrame
    groups: list[Group]
    tasks: list[str]
    specs: dict[str, TaskSpec]
    metric_keys: list[str]  # every metric column of the CSV, in order
    skipped: list[tuple[str, str]]  # (path as shown, reason)
    generated_at: str
    sources: str
    plots: dict[str, list[Plot]] = field(default_factory=dict)

    def reported(self, task: str) -> pd.DataFrame:
        frame = self.frame
        return frame[(frame["kind"] == "reported") & (frame["task"] == task)]

    def task_groups(self, task: str) -> list[Group]:
        return [g for g in self.groups if g.task == task]

    def task_plots(self, task: str, group: str | None = None) -> list[Plot]:
        """Figures of one group (``group`` = its key), or the whole-task figures (``group`` None)."""
        return [p for p in self.plots.get(task, []) if p.group == group]
