"""Which metrics each task shows, and which one ranks it: asked of the task registry.

Records hold every metric a task computes; tables show only the headline ones (the CSV keeps
all of them). The metric names, their direction, the task's label and its position are the task
classes' (``metric_keys``, ``primary_metric``, ``headline_metrics``, ``lower_is_better``, ``label``,
``order``), so the Markdown, HTML, CSV, plots and the tasks can never disagree, and a task registered
from outside the repository appears like a built-in one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from harness.registry import TaskEntry, ordered_tasks


@dataclass(frozen=True)
class TaskSpec:
    """How one task appears on the leaderboard.

    - ``primary``: the metric that ranks runs within a group and is plotted.
    - ``shown``: metrics in the Markdown/HTML tables; ``csv``: all metrics in the CSV.
    - ``lower_is_better``: the metrics where a smaller value is better (the DAVIS decays); they are listed
      but never rank anything unless the task makes one its primary metric.
    """

    name: str
    label: str
    primary: str
    shown: tuple[str, ...]
    csv: tuple[str, ...]
    lower_is_better: tuple[str, ...] = ()

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of ``metric`` is better."""
        return metric not in self.lower_is_better


def _from_entry(entry: TaskEntry) -> TaskSpec:
    task = entry.factory
    shown = tuple(task.headline_metrics) or (entry.metric,)
    lower = tuple(m for m in entry.metric_keys if not entry.higher_is_better(m))
    return TaskSpec(entry.name, entry.label, entry.metric, shown, entry.metric_keys, lower)


class _RegisteredTasks(Mapping[str, TaskSpec]):
    """The spec of every registered task, in leaderboard order (``Task.order``, then registration order);
    read from the registry on each use, so a task registered later is there too."""

    def _specs(self) -> dict[str, TaskSpec]:
        return {entry.name: _from_entry(entry) for entry in ordered_tasks()}

    def __getitem__(self, task: str) -> TaskSpec:
        return self._specs()[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs())

    def __len__(self) -> int:
        return len(self._specs())


TASKS: Mapping[str, TaskSpec] = _RegisteredTasks()


def task_spec(task: str, metric_keys: Iterable[str] = ()) -> TaskSpec:
    """The spec of ``task``; a task no longer registered (an old record) shows all its metrics, sorted, and
    is ranked by the first."""
    if task in TASKS:
        return TASKS[task]
    keys = tuple(sorted(metric_keys))
    if not keys:
        raise ValueError(f"task {task!r} is unknown and has no metrics")
    return TaskSpec(task, task, keys[0], keys, keys)


def task_order(task: str) -> tuple[int, str]:
    """Sort key putting registered tasks in their order, unregistered ones after, alphabetically."""
    names = list(TASKS)
    return (names.index(task), "") if task in TASKS else (len(names), task)
