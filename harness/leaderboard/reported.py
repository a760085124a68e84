"""Published numbers (``results/reported.yaml``) and how they meet reproduced runs.

Published numbers come from different runners and protocols, so each carries its source and a
protocol *group* (docs/published-numbers.md §2: A = CRW-style, B = DINO-style, C = method-specific, D =
third-party re-evaluation). Only groups that correspond to one of our protocol families (A ->
``crw``, B -> ``dino``) can be matched with a reproduced run, and only when the run used the same
weights: then the leaderboard shows reproduced - reported in points.

The file is validated as a whole on load: a typo in a key or a metric name would otherwise make
a published number silently disappear from the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_yaml
from harness.leaderboard.collect import Run
from harness.leaderboard.spec import TASKS

SCHEMA_VERSION = 1
_ENTRY_REQUIRED = ("id", "method", "task", "metrics", "source", "group", "confirmed")
_ENTRY_OPTIONAL = ("backbone", "pretraining", "weights", "unconfirmed", "note")
_SHA_PREFIX = "sha256:"
_MIN_SHA_CHARS = 8


class ReportedError(HarnessError):
    """``reported.yaml`` is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class ProtocolGroup:
    name: str
    family: str | None
    description: str


@dataclass(frozen=True)
class ReportedEntry:
    """One published result: one method, one task, one source. Metrics are in percent."""

    id: str
    method: str
    task: str
    metrics: dict[str, float]
    source: str
    group: ProtocolGroup
    confirmed: bool
    backbone: str | None = None
    pretraining: str | None = None
    weights: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    note: str | None = None

    def is_confirmed(self, metric: str) -> bool:
        """Whether ``metric`` was read in a primary source (False = marked †, docs/published-numbers.md §3)."""
        return self.confirmed and metric not in self.unconfirmed

    def matches(self, run: Run) -> bool:
        """Same task, same protocol family and the same weights (checkpoint sha256 or method tag)."""
        if self.task != run.task or self.group.family is None:
            return False
        if self.group.family != run.record["protocol"]["name"]:
            return False
        checkpoint = run.record.get("checkpoint") or {}
        sha = str(checkpoint.get("sha256", ""))
        for tag in self.weights:
            if tag.startswith(_SHA_PREFIX):
                if sha and sha.startswith(tag[len(_SHA_PREFIX) :]):
                    return True
            elif tag == run.record["method"]:
                return True
        return False


def _fail(path: Path, where: str, message: str) -> ReportedError:
    return ReportedError(f"{path}: {where}: {message}")


def _optional_str(value: Any, path: Path, where: str, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _fail(path, where, f"{key!r} must be a string or null")
    return value


def _str_list(value: Any, path: Path, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, where, f"{key!r} must be a list of non-empty strings")
    return tuple(value)


def _groups(raw: Any, path: Path) -> dict[str, ProtocolGroup]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(path, "protocol_groups", "must be a non-empty mapping of group name to {family, description}")
    groups = {}
    for name, body in raw.items():
        if not isinstance(body, dict) or set(body) - {"family", "description"} or "description" not in body:
            raise _fail(path, f"protocol group {name!r}", "needs 'description' and optional 'family', nothing else")
        family = _optional_str(body.get("family"), path, f"protocol group {name!r}", "family")
        groups[str(name)] = ProtocolGroup(str(name), family, str(body["description"]))
    return groups


def _metrics(raw: Any, task: str, path: Path, where: str) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(path, where, "'metrics' must be a non-empty mapping of metric name to percent")
    allowed = TASKS[task].csv if task in TASKS else None
    metrics = {}
    for key, value in raw.items():
        if allowed is not None and key not in allowed:
            raise _fail(path, where, f"metric {key!r} is not a {task} metric ({', '.join(allowed)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _fail(path, where, f"metric {key!r} is {value!r}, not a number")
        if not -100.0 <= value <= 100.0:
            raise _fail(path, where, f"metric {key!r} = {value} is not a percentage")
        metrics[str(key)] = float(value)
    return metrics


def _entry(raw: Any, index: int, groups: dict[str, ProtocolGroup], path: Path) -> ReportedEntry:
    where = f"entry {index}"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a mapping")
    if isinstance(raw.get("id"), str):
        where = f"entry {index} ({raw['id']})"
    missing = [key for key in _ENTRY_REQUIRED if key not in raw]
    if missing:
        raise _fail(path, where, f"missing key(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_ENTRY_REQUIRED) - set(_ENTRY_OPTIONAL))
    if unknown:
        raise _fail(path, where, f"unknown key(s) {', '.join(unknown)}")
    for key in ("id", "method", "task", "source"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _fail(path, where, f"{key!r} must be a non-empty string")
    if not isinstance(raw["confirmed"], bool):
        raise _fail(path, where, "'confirmed' must be true or false")
    if raw["group"] not in groups:
        raise _fail(path, where, f"group {raw['group']!r} is not one of {', '.join(groups)}")
    metrics = _metrics(raw["metrics"], raw["task"], path, where)
    unconfirmed = _str_list(raw.get("unconfirmed"), path, where, "unconfirmed")
    stray = sorted(set(unconfirmed) - set(metrics))
    if stray:
        raise _fail(path, where, f"'unconfirmed' names metrics the entry does not have: {', '.join(stray)}")
    weights = _str_list(raw.get("weights"), path, where, "weights")
    for tag in weights:
        if tag.startswith(_SHA_PREFIX):
            digest = tag[len(_SHA_PREFIX) :]
            if len(digest) < _MIN_SHA_CHARS or any(c not in "0123456789abcdef" for c in digest):
                raise _fail(path, where, f"weights tag {tag!r} needs at least {_MIN_SHA_CHARS} lowercase hex digits")
    return ReportedEntry(
        id=raw["id"],
        method=raw["method"],
        task=raw["task"],
        metrics=metrics,
        source=raw["source"],
        group=groups[raw["group"]],
        confirmed=raw["confirmed"],
        backbone=_optional_str(raw.get("backbone"), path, where, "backbone"),
        pretraining=_optional_str(raw.get("pretraining"), path, where, "pretraining"),
        weights=weights,
        unconfirmed=unconfirmed,
        note=_optional_str(raw.get("note"), path, where, "note"),
    )


def load_reported(path: str | Path) -> list[ReportedEntry]:
    """Parse and validate ``reported.yaml``; any problem raises :class:`ReportedError` naming the entry."""
    path = Path(path)
    data = read_yaml(path, "published results", ReportedError)
    if not isinstance(data, dict):
        raise ReportedError(f"{path}: top level must be a mapping with schema_version, protocol_groups, entries")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ReportedError(f"{path}: schema_version is {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if data.get("unit") != "percent":
        raise ReportedError(f"{path}: 'unit' must be 'percent' (published numbers are kept as printed)")
    groups = _groups(data.get("protocol_groups"), path)
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ReportedError(f"{path}: 'entries' must be a non-empty list")
    entries = [_entry(raw, i, groups, path) for i, raw in enumerate(raw_entries)]
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ReportedError(f"{path}: entry id {entry.id!r} is used twice")
        seen.add(entry.id)
    return entries


def load_protocol_groups(path: str | Path) -> list[ProtocolGroup]:
    """The protocol groups of ``reported.yaml`` in file order (the legend under the summary)."""
    path = Path(path)
    data = read_yaml(path, "published results", ReportedError)
    return list(_groups(data.get("protocol_groups") if isinstance(data, dict) else None, path).values())
