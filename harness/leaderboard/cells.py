"""Which columns each table shows and how one cell is printed.

Markdown and HTML print the same columns with the same formatting, so both are defined once here.
Every formatter returns the text of a cell plus a sort key (for the HTML's sortable columns).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard.spec import TaskSpec

MISSING = "–"
DAGGER = "†"


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


@dataclass(frozen=True)
class Column:
    """A table column: header, and how to turn a row into (text, numeric sort value or None)."""

    header: str
    cell: Callable[[pd.Series], tuple[str, float | None]]


def _text(key: str) -> Callable[[pd.Series], tuple[str, float | None]]:
    def cell(row: pd.Series) -> tuple[str, float | None]:
        value = row.get(key)
        return (MISSING if is_missing(value) or value == "" else str(value)), None

    return cell


def _number(key: str, digits: int) -> Callable[[pd.Series], tuple[str, float | None]]:
    def cell(row: pd.Series) -> tuple[str, float | None]:
        value = row.get(key)
        if is_missing(value):
            return MISSING, None
        return f"{float(value):.{digits}f}", float(value)

    return cell


def _metric(key: str) -> Callable[[pd.Series], tuple[str, float | None]]:
    """A percentage with one decimal, daggered where the published number is unconfirmed."""

    def cell(row: pd.Series) -> tuple[str, float | None]:
        value = row.get(key)
        if is_missing(value):
            return MISSING, None
        unconfirmed = row.get("unconfirmed")
        mark = DAGGER if isinstance(unconfirmed, tuple) and key in unconfirmed else ""
        return f"{float(value):.1f}{mark}", float(value)

    return cell


def _parameters(row: pd.Series) -> tuple[str, float | None]:
    """Parameter count as 11.7M / 3.2k / 0 (floors such as ``pixels`` have none)."""
    value = row.get("parameters")
    if is_missing(value):
        return MISSING, None
    count = float(value)
    text = f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}k" if count >= 1e3 else f"{count:.0f}"
    return text, count


def _protocol(row: pd.Series) -> tuple[str, float | None]:
    return f"{row['protocol']} · {row['protocol_hash']}", None


def _group(row: pd.Series) -> tuple[str, float | None]:
    family = row.get("protocol")
    suffix = f" (≈ {family})" if isinstance(family, str) and family else ""
    return f"{row['protocol_group']}{suffix}", None


def _rank(row: pd.Series) -> tuple[str, float | None]:
    value = row.get("rank")
    return (MISSING, None) if is_missing(value) else (str(int(value)), float(value))


def reproduced_columns(spec: TaskSpec) -> list[Column]:
    """Columns of a table of reproduced runs of one task (one protocol group)."""
    return [
        Column("rank", _rank),
        Column("kind", _text("kind")),
        Column("method", _text("method")),
        Column("backbone", _text("backbone")),
        Column("params", _parameters),
        Column("pretraining", _text("pretraining")),
        Column("checkpoint", _text("checkpoint")),
        Column("protocol", _protocol),
        Column("task", _text("task")),
        *(Column(f"{key} %", _metric(key)) for key in spec.shown),
        Column(f"Δ {spec.primary} vs reported (pts)", _text("delta_vs_reported")),
        Column("features ms/frame", _number("features_ms_per_frame", 1)),
        Column("propagation ms/frame", _number("propagation_ms_per_frame", 1)),
        Column("total s", _number("total_s", 1)),
        Column("peak RSS MiB", _number("peak_rss_mib", 0)),
        Column("peak GPU MiB", _number("peak_gpu_mib", 0)),
        Column("device", _text("device")),
        Column("date", _text("date")),
        Column("commit", _text("commit")),
        Column("data", _text("data")),
    ]


def reported_columns(spec: TaskSpec) -> list[Column]:
    """Columns of the table of published results of one task."""
    return [
        Column("kind", _text("kind")),
        Column("method", _text("method")),
        Column("backbone", _text("backbone")),
        Column("pretraining", _text("pretraining")),
        Column("protocol group", _group),
        *(Column(f"{key} %", _metric(key)) for key in spec.shown),
        Column("source", _text("source")),
        Column("id", _text("reported_id")),
    ]


def csv_value(value: Any) -> str:
    """Plain, locale-free text for the CSV: floats rounded to 4 decimals, bools lower-case."""
    if is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(float(value), 4))
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)
