"""Finding, reading and validating run records for the leaderboard.

A leaderboard built from a half-written or hand-edited record would publish numbers nobody
measured, so every record is checked against the schema before it is used. A record that fails
is *skipped and reported* (by path, with the reason) instead of aborting the whole table: one
broken run must not hide the other runs, and it must not vanish silently either. A valid record is
handed on typed (:class:`~harness.runs.schema.RunRecord`): readers use its fields, not raw keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.leaderboard.spec import TASKS
from harness.runs.rederive import derivation_problem
from harness.runs.schema import RecordInvalid, RunRecord
from harness.runs.schema import validate_record as validate_schema

RECORD_NAME = "record.json"


class RecordError(HarnessError):
    """A run record cannot be used; the message says why (the caller adds the path)."""


@dataclass(frozen=True)
class Run:
    """One valid run record and where it was read from."""

    path: Path
    record: RunRecord

    @property
    def task(self) -> str:
        return self.record.task

    @property
    def protocol_hash(self) -> str:
        return self.record.protocol.hash


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


def validate_record(data: Any) -> RunRecord:
    """``data`` typed, if the schema (:mod:`harness.runs.schema`) accepts it, it has its task's ranking
    metric and its numbers re-derive from its own per-sequence/per-object blocks
    (:mod:`harness.runs.rederive`), else raise :class:`RecordError` naming the key."""
    try:
        record = validate_schema(data)
    except RecordInvalid as err:
        raise RecordError(str(err)) from None
    spec = TASKS.get(record.task)
    if spec is not None and record.metrics.get(spec.primary) is None:
        raise RecordError(f"metrics lack the primary metric {spec.primary!r} of task {record.task!r}")
    problem = derivation_problem(data)
    if problem:
        raise RecordError(problem)
    return record


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
    """Valid runs and skipped files (with reasons) under ``paths``, both in path order.

    Copies of one run (the same run digest: a copied folder, a record kept in two places) are one run:
    the first by path is kept and the others are skipped as its duplicates, so no run is ranked twice.
    """
    runs: list[Run] = []
    skipped: list[Skipped] = []
    first: dict[str, Path] = {}
    for path in find_record_files(paths):
        try:
            run = read_record(path)
        except RecordError as err:
            skipped.append(Skipped(path=path, reason=str(err).removeprefix(f"{path}: ")))
            continue
        digest = run.record.run_digest
        if digest is not None and digest in first:
            skipped.append(Skipped(path=path, reason=f"duplicate of {first[digest]} (same run digest {digest}); "
                                   "a run is ranked once"))
            continue
        if digest is not None:
            first[digest] = path
        runs.append(run)
    return runs, skipped
