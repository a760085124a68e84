"""What the Markdown and HTML renderers receive: everything already computed and ordered.

Renderers only format; all decisions (sections, grouping, ranking, smoke runs, runtime classes,
which plots exist, the summary) are made before, in :mod:`harness.leaderboard.build`, so the two
outputs cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.leaderboard.reported import ProtocolGroup
from harness.leaderboard.spec import TaskSpec
from harness.leaderboard.summary import Summary
from harness.leaderboard.table import Group

GENERATED_PREFIX = "Generated at: "
INTRO = (
    "Scores are percentages. Sections are named after the data a run measured (identified from its "
    "sequence names and object counts), runs are ranked only against runs on the same sequences under "
    "the same protocol hash, and runtimes are compared only on one device with one thread count. "
    "‡ = run from uncommitted code; ◦ = runtime measured with older engine or stage-timing code; "
    "† = published number the source study could not confirm."
)


@dataclass(frozen=True)
class Plot:
    """One figure: where it is written (relative to the output folder) and its SVG text."""

    path: str
    title: str
    svg: str
    group: str | None = None  # Group.key for a per-group figure, None for a whole-section figure


@dataclass
class Leaderboard:
    """The complete leaderboard, ready to render."""

    frame: pd.DataFrame
    groups: list[Group]
    sections: list[tuple[str, str]]  # (section label, task whose metrics and published numbers it shows)
    specs: dict[str, TaskSpec]  # by task
    metric_keys: list[str]  # every metric column of the CSV, in order
    skipped: list[tuple[str, str]]  # (path as shown, reason)
    generated_at: str
    sources: str
    protocol_groups: list[ProtocolGroup] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    plots: dict[str, list[Plot]] = field(default_factory=dict)  # by section
    sweeps: list[tuple[str, str]] = field(default_factory=list)  # (sweep name, report path relative to the page)

    def reported(self, section: str) -> pd.DataFrame:
        frame = self.frame
        return frame[(frame["kind"] == "reported") & (frame["section"] == section)]

    def smoke(self) -> pd.DataFrame:
        frame = self.frame
        return frame[(frame["kind"] == "reproduced") & frame["smoke"].astype(bool)]

    def section_groups(self, section: str) -> list[Group]:
        return [g for g in self.groups if g.section == section]

    def section_plots(self, section: str, group: str | None = None) -> list[Plot]:
        """Figures of one group (``group`` = its key), or the whole-section figures (``group`` None)."""
        return [p for p in self.plots.get(section, []) if p.group == group]


def anchor(section: str) -> str:
    """An HTML id for a section heading (letters, digits and dashes)."""
    return "".join(c if c.isalnum() else "-" for c in section.lower()).strip("-")
