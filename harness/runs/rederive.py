"""A record's numbers re-derived from its own finer-grained blocks, so an edited number is caught.

A record stores its global ``metrics`` next to the scores they are computed from; nothing but this
check stops a hand-edited ``metrics`` (or a per-sequence summary) from being ranked. What can be
re-derived is the task's to say: each task class implements
:meth:`~harness.tasks.base.Task.rederive`, yielding ``(key, stored, derived, source)`` for every number
it can recompute exactly as its ``aggregate`` does (DAVIS from ``per_object``, JHMDB from per-clip joint
counts, VIP from per-video confusion matrices). This module holds the generic part: the comparison and
the sentence naming the first number that does not follow.

A block a record does not store is skipped by the task; a record of a task no longer registered is not
checked. Pure numpy (the leaderboard and ``harness schema --check`` import no torch).
"""

from __future__ import annotations

import math
from typing import Any

from harness.errors import HarnessError

#: relative tolerance: the same float operations in the same order give the same bits, but a record
#: written by another numpy may differ in the last place
_RTOL = 1e-9


def derivation_problem(record: dict[str, Any]) -> str | None:
    """None when every number that can be re-derived from the record's own blocks matches; else a sentence
    naming the first key that does not (or the block that cannot be read)."""
    from harness.registry import get_task

    try:
        task = get_task(str(record.get("task")))
    except HarnessError:
        return None
    try:
        for key, stored, derived, source in task.factory.rederive(record):
            if not _same(stored, derived):
                return (f"{key} is {stored!r}, but the record's own {source} give {derived!r}: the record was "
                        "edited or damaged after it was written, so its numbers cannot be trusted")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return f"its per-sequence scores cannot be read to re-derive its metrics ({type(err).__name__}: {err})"
    return None


def _same(stored: Any, derived: float | int | None) -> bool:
    if derived is None or stored is None:
        return stored is None and derived is None
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return False
    return math.isclose(stored, derived, rel_tol=_RTOL, abs_tol=1e-12)


def nan_none(value: float) -> float | None:
    """NaN as None, the way records store an undefined score."""
    return None if math.isnan(value) else float(value)
