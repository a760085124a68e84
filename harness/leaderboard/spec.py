"""Which metrics each task shows, and which one ranks it.

Records hold every metric a task computes; tables show only the headline ones (the CSV keeps
all of them). Keeping this in one table means the Markdown, HTML, CSV and plots can never
disagree about a task's primary metric.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DAVIS_METRICS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


@dataclass(frozen=True)
class TaskSpec:
    """How one task appears on the leaderboard.

    - ``primary``: the metric that ranks runs within a group and is plotted.
    - ``shown``: metrics in the Markdown/HTML tables; ``csv``: all metrics in the CSV (the DAVIS
      decays, where lower is better, are listed but never rank anything).
    """

    name: str
    label: str
    primary: str
    shown: tuple[str, ...]
    csv: tuple[str, ...]


TASKS: dict[str, TaskSpec] = {
    "davis": TaskSpec("davis", "DAVIS-2017 val", "J&F-Mean", ("J&F-Mean", "J-Mean", "F-Mean"), DAVIS_METRICS),
    "davis2016": TaskSpec(
        "davis2016", "DAVIS-2016 val", "J&F-Mean", ("J&F-Mean", "J-Mean", "F-Mean"), DAVIS_METRICS
    ),
    "jhmdb": TaskSpec(
        "jhmdb",
        "JHMDB split 1",
        "PCK@0.1",
        ("PCK@0.1", "PCK@0.2"),
        ("PCK@0.1", "PCK@0.2", "PCK@0.3", "PCK@0.4", "PCK@0.5"),
    ),
    "vip": TaskSpec("vip", "VIP val", "mIoU", ("mIoU",), ("mIoU", "pixel_acc")),
}


def task_spec(task: str, metric_keys: Iterable[str] = ()) -> TaskSpec:
    """The spec of ``task``; a task the leaderboard does not know shows all its metrics, sorted."""
    if task in TASKS:
        return TASKS[task]
    keys = tuple(sorted(metric_keys))
    if not keys:
        raise ValueError(f"task {task!r} is unknown and has no metrics")
    return TaskSpec(task, task, keys[0], keys, keys)


def task_order(task: str) -> tuple[int, str]:
    """Sort key putting known tasks in their fixed order, unknown ones after, alphabetically."""
    names = list(TASKS)
    return (names.index(task), "") if task in TASKS else (len(names), task)
