"""Published numbers (``results/reported.yaml``) and how they meet reproduced runs.

Published numbers come from different runners and protocols, so each carries its source and a
protocol *group* (docs/published-numbers.md §2: A = CRW-style, B = DINO-style, C = method-specific, D =
third-party re-evaluation). Only groups that correspond to one of our protocol families (A ->
``crw``, B -> ``dino``) can be matched with a reproduced run, and only when the run used the same
weights: then the leaderboard shows reproduced - reported in points.

The file is declared as pydantic models (:class:`ReportedEntry`, :class:`ProtocolGroup`) read through
:func:`harness.declared.read_model` and validated as a whole on load: a typo in a key or a metric name
would otherwise make a published number silently disappear from the tables, so it is an error naming
the file, the entry and the key, with the closest known keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, field_validator

from harness.declared import Declared, did_you_mean, read_model
from harness.errors import HarnessError
from harness.io import read_yaml
from harness.leaderboard.collect import Run
from harness.leaderboard.spec import TASKS

SCHEMA_VERSION = 1
_SHA_PREFIX = "sha256:"
_MIN_SHA_CHARS = 8


class ReportedError(HarnessError):
    """``reported.yaml`` is malformed; the message names the file, the entry and the key."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _none_is_empty(value: Any) -> Any:
    return () if value is None else value


Text = Annotated[str, AfterValidator(_not_blank)]
#: a list of non-empty strings; absent or null is empty
Names = Annotated[tuple[Text, ...], BeforeValidator(_none_is_empty)]
#: a published number as printed: a finite percentage (true/false and strings are refused)
Percent = Annotated[float, Field(strict=True, ge=-100.0, le=100.0, allow_inf_nan=False)]


class ProtocolGroupBody(Declared):
    """One ``protocol_groups`` entry as written: the family it corresponds to (if any) and what it is."""

    model_config = ConfigDict(frozen=True)

    family: str | None = None
    description: str


class ProtocolGroup(ProtocolGroupBody):
    """A protocol group with its name (the key it is listed under)."""

    name: str


class ReportedEntry(Declared):
    """One published result: one method, one task, one source. Metrics are in percent.

    In the file ``group`` names a protocol group; :func:`load_reported` puts the group itself here.
    """

    model_config = ConfigDict(frozen=True)

    id: Text
    method: Text
    task: Text
    metrics: dict[str, Percent] = Field(min_length=1)
    source: Text
    group: ProtocolGroup
    confirmed: bool = Field(strict=True)
    backbone: str | None = None
    pretraining: str | None = None
    weights: Names = ()
    unconfirmed: Names = ()
    note: str | None = None

    @field_validator("weights")
    @classmethod
    def _sha_tags(cls, weights: tuple[str, ...]) -> tuple[str, ...]:
        for tag in weights:
            digest = tag[len(_SHA_PREFIX) :]
            if tag.startswith(_SHA_PREFIX) and (len(digest) < _MIN_SHA_CHARS or any(c not in "0123456789abcdef" for c in digest)):
                raise ValueError(f"weights tag {tag!r} needs at least {_MIN_SHA_CHARS} lowercase hex digits")
        return weights

    def is_confirmed(self, metric: str) -> bool:
        """Whether ``metric`` was read in a primary source (False = marked †, docs/published-numbers.md §3)."""
        return self.confirmed and metric not in self.unconfirmed

    def matches(self, run: Run) -> bool:
        """Same task, same protocol family and the same weights (checkpoint sha256 or method tag)."""
        if self.task != run.task or self.group.family is None:
            return False
        if self.group.family != run.record.protocol.name:
            return False
        sha = (run.record.checkpoint.sha256 if run.record.checkpoint is not None else None) or ""
        for tag in self.weights:
            if tag.startswith(_SHA_PREFIX):
                if sha and sha.startswith(tag[len(_SHA_PREFIX) :]):
                    return True
            elif tag == run.record.method:
                return True
        return False


class ReportedFile(Declared):
    """``reported.yaml`` at the top level; entries are read one by one (:class:`ReportedEntry`), so an
    error names the entry."""

    schema_version: Literal[1]
    unit: Literal["percent"]
    protocol_groups: dict[str, dict[str, Any]] = Field(min_length=1)
    entries: list[Any] = Field(min_length=1)


def _groups(data: ReportedFile, path: Path) -> dict[str, ProtocolGroup]:
    groups = {}
    for name, body in data.protocol_groups.items():
        read = read_model(ProtocolGroupBody, body, f"{path}: protocol group {name!r}", ReportedError)
        groups[name] = ProtocolGroup(name=name, **read.model_dump())
    return groups


def _entry(raw: Any, index: int, groups: dict[str, ProtocolGroup], path: Path) -> ReportedEntry:
    where = f"{path}: entry {index}"
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        where = f"{path}: entry {index} ({raw['id']})"
    if isinstance(raw, dict) and "group" in raw:
        if raw["group"] not in groups:
            raise ReportedError(f"{where}: key 'group': {raw['group']!r} is not one of {', '.join(groups)}")
        raw = {**raw, "group": groups[raw["group"]]}
    entry = read_model(ReportedEntry, raw, where, ReportedError)
    allowed = TASKS[entry.task].csv if entry.task in TASKS else None
    for key in entry.metrics:
        if allowed is not None and key not in allowed:
            raise ReportedError(f"{where}: key 'metrics.{key}': not a {entry.task} metric.{did_you_mean(key, allowed)} "
                                f"Its metrics: {', '.join(allowed)}")
    stray = sorted(set(entry.unconfirmed) - set(entry.metrics))
    if stray:
        raise ReportedError(f"{where}: key 'unconfirmed' names metrics the entry does not have: {', '.join(stray)}")
    return entry


def _read(path: Path) -> ReportedFile:
    return read_model(ReportedFile, read_yaml(path, "published results", ReportedError), str(path), ReportedError)


def load_reported(path: str | Path) -> list[ReportedEntry]:
    """Parse and validate ``reported.yaml``; any problem raises :class:`ReportedError` naming the entry and key."""
    path = Path(path)
    data = _read(path)
    groups = _groups(data, path)
    entries = [_entry(raw, i, groups, path) for i, raw in enumerate(data.entries)]
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ReportedError(f"{path}: entry id {entry.id!r} is used twice")
        seen.add(entry.id)
    return entries


def load_protocol_groups(path: str | Path) -> list[ProtocolGroup]:
    """The protocol groups of ``reported.yaml`` in file order (the legend under the summary)."""
    path = Path(path)
    return list(_groups(_read(path), path).values())
