"""Finding, reading and validating run records for the leaderboard.

A leaderboard built from a half-written or hand-edited record would publish numbers nobody
measured, so every record is checked against the schema before it is used. A record that fails
is *skipped and reported* (by path, with the reason) instead of aborting the whole table: one
broken run must not hide the other runs, and it must not vanish silently either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.leaderboard.spec import TASKS

SCHEMA_VERSION = 1
RECORD_NAME = "record.json"

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "method": str,
    "task": str,
    "protocol": dict,
    "metrics": dict,
}
# Blocks that may be absent (older or partial runners) but must have the right shape when present.
_OPTIONAL_DICTS = ("method_info", "env", "data", "timing", "per_sequence", "per_object", "config")


class RecordError(HarnessError):
    """A run record cannot be used; the message says why (the caller adds the path)."""


@dataclass(frozen=True)
class Run:
    """One valid run record and where it was read from."""

    path: Path
    record: dict[str, Any]

    @property
    def task(self) -> str:
        return self.record["task"]

    @property
    def protocol_hash(self) -> str:
        return self.record["protocol"]["hash"]


@dataclass(frozen=True)
class Skipped:
    """A record file that was found but could not be used."""

    path: Path
    reason: str


def find_record_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``record.json`` under ``paths`` (files are taken as given), sorted and deduplicated.

    A path that does not exist raises: a typo on the command line must not produce an empty
    leaderboard that looks like "no runs yet".
    """
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob(RECORD_NAME) if p.is_file())
        else:
            raise HarnessError(f"no such file or folder: {path}")
    return sorted(found)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_metrics(metrics: dict[str, Any], where: str) -> None:
    """Metrics are fractions or null (a task may leave a metric undefined, e.g. no visible joint)."""
    for key, value in metrics.items():
        if value is None:
            continue
        if not _is_number(value):
            raise RecordError(f"{where}[{key!r}] is {value!r}, not a finite number or null")
        # Decays may be negative; anything beyond 1 in magnitude is a percentage written by mistake.
        if not -1.0 <= value <= 1.0:
            raise RecordError(f"{where}[{key!r}] = {value} is not a fraction in [-1, 1] (percent?)")


def validate_record(data: Any) -> dict[str, Any]:
    """Return ``data`` if it is a usable schema-1 record, else raise :class:`RecordError`."""
    if not isinstance(data, dict):
        raise RecordError(f"top level is {type(data).__name__}, not an object")
    if "schema_version" not in data:
        raise RecordError("missing key 'schema_version'")
    if data["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"schema_version is {data['schema_version']!r}, this leaderboard reads {SCHEMA_VERSION}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise RecordError(f"missing key(s) {', '.join(map(repr, missing))}")
    for key, kind in _REQUIRED.items():
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise RecordError(f"{key!r} is {type(data[key]).__name__}, expected {getattr(kind, '__name__', kind)}")
    for key in ("name", "hash"):
        if not isinstance(data["protocol"].get(key), str) or not data["protocol"][key]:
            raise RecordError(f"protocol.{key} is missing or not a non-empty string")
    for key in _OPTIONAL_DICTS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise RecordError(f"{key!r} is {type(data[key]).__name__}, expected an object")
    checkpoint = data.get("checkpoint")
    if checkpoint is not None and not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("sha256"), str)):
        raise RecordError("'checkpoint' must be null or an object with a 'sha256' string")
    if not data["metrics"]:
        raise RecordError("'metrics' is empty")
    _check_metrics(data["metrics"], "metrics")
    spec = TASKS.get(data["task"])
    if spec is not None and data["metrics"].get(spec.primary) is None:
        raise RecordError(f"metrics lack the primary metric {spec.primary!r} of task {data['task']!r}")
    # Per-sequence blocks also carry counts and confusion matrices; only their shape is checked here,
    # the plots pick the fraction-valued keys.
    for seq, values in (data.get("per_sequence") or {}).items():
        if not isinstance(values, dict):
            raise RecordError(f"per_sequence[{seq!r}] is not an object")
    for key, value in (data.get("timing") or {}).items():
        if value is not None and not _is_number(value):
            raise RecordError(f"timing[{key!r}] is {value!r}, not a number or null")
    visuals = data.get("visualizations")
    if visuals is not None and not (isinstance(visuals, list) and all(isinstance(v, str) for v in visuals)):
        raise RecordError("'visualizations' must be a list of relative paths")
    return data


def read_record(path: Path) -> Run:
    """Read and validate one record file; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: cannot read: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    try:
        return Run(path=path, record=validate_record(data))
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from err


def load_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[Skipped]]:
    """Valid runs and skipped files (with reasons) under ``paths``, both in path order."""
    runs: list[Run] = []
    skipped: list[Skipped] = []
    for path in find_record_files(paths):
        try:
            runs.append(read_record(path))
        except RecordError as err:
            skipped.append(Skipped(path=path, reason=str(err).removeprefix(f"{path}: ")))
    return runs, skipped
