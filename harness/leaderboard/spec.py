"""Which metrics each task shows, and which one ranks it.

Records hold every metric a task computes; tables show only the headline ones (the CSV keeps
all of them). The metric names are the task classes' (``metric_keys``, ``primary_metric``,
``headline_metrics``), so the Markdown, HTML, CSV, plots and the tasks can never disagree; the
leaderboard adds only a label per task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.registry import get_task


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


#: the leaderboard's label of each task it knows, in table order
LABELS = {"davis": "DAVIS-2017 val", "davis2016": "DAVIS-2016 val", "jhmdb": "JHMDB split 1", "vip": "VIP val"}


def _from_task(name: str, label: str) -> TaskSpec:
    task = get_task(name)
    shown = tuple(task.factory.headline_metrics) or (task.metric,)
    return TaskSpec(name, label, task.metric, shown, task.metric_keys)


TASKS: dict[str, TaskSpec] = {name: _from_task(name, label) for name, label in LABELS.items()}


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
