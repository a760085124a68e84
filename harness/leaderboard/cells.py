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

from harness.leaderboard.runtime import DIRTY_CODE, OLDER_CODE
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
    role: str | None = None  # "method", "primary" or "runtime:<class>": what renderers and tests look for


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


def parameters_text(value: Any) -> str:
    """Parameter count as 11.7M / 3.2k / 0 (floors such as ``pixels`` have none)."""
    if is_missing(value):
        return MISSING
    count = float(value)
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}k" if count >= 1e3 else f"{count:.0f}"


def _group(row: pd.Series) -> tuple[str, float | None]:
    family = row.get("protocol")
    suffix = f" (≈ {family})" if isinstance(family, str) and family else ""
    return f"{row['protocol_group']}{suffix}", None


def _rank(row: pd.Series) -> tuple[str, float | None]:
    value = row.get("rank")
    return (MISSING, None) if is_missing(value) else (str(int(value)), float(value))


def run_name(row: pd.Series) -> str:
    """``method [variant] · weights``: which network, and what its weights are (random init, ImageNet-1k,
    a checkpoint), so that a random network is never read as the pretrained one of the same name."""
    label = str(row["method"])
    if row.get("variant"):
        label += f" [{row['variant']}]"
    weights = row.get("weights")
    return label + (f" · {weights}" if isinstance(weights, str) and weights else "")


def method_label(row: pd.Series) -> str:
    """:func:`run_name`, ‡ when the record came from uncommitted code, and the task that read the
    data when it is not the task of the dataset's own section."""
    label = run_name(row)
    label += DIRTY_CODE if row.get("dirty") else ""
    if row.get("kind") == "reproduced" and row.get("home_task") and row.get("task") != row.get("home_task"):
        label += f" (via --task {row['task']})"  # e.g. DAVIS-2016 sequences read by the 2017 task
    return label


def _method(row: pd.Series) -> tuple[str, float | None]:
    return method_label(row), None


def _runtime(klass: str) -> Callable[[pd.Series], tuple[str, float | None]]:
    """ms/frame of the rows of one runtime class; other rows' cells stay empty (not comparable)."""

    def cell(row: pd.Series) -> tuple[str, float | None]:
        value = row.get("ms_per_frame")
        if row.get("runtime_class") != klass:
            return "", None
        if is_missing(value):
            return MISSING, None
        mark = OLDER_CODE if row.get("older_code") is True else ""
        return f"{float(value):,.0f}{mark}", float(value)

    return cell


def runtime_letters(classes: list[str]) -> dict[str, str]:
    """A letter per runtime class (in the given order) for column headers and the legend."""
    return {klass: "abcdefghijklmnopqrstuvwxyz"[i % 26] for i, klass in enumerate(classes)}


def _device(letters: dict[str, str]) -> Callable[[pd.Series], tuple[str, float | None]]:
    def cell(row: pd.Series) -> tuple[str, float | None]:
        letter = letters.get(str(row.get("runtime_class")), "?")
        return f"{row.get('device') or MISSING} ({letter})", None

    return cell


def runtime_columns(classes: list[str], letters: dict[str, str]) -> list[Column]:
    """One ms/frame column per runtime class present, then the device: runtimes of different devices
    or thread counts never share a column."""
    return [*(Column(f"ms/frame ({letters[c]})", _runtime(c), f"runtime:{c}") for c in classes),
            Column("device", _device(letters))]


def reproduced_columns(spec: TaskSpec, classes: list[str], letters: dict[str, str]) -> list[Column]:
    """Columns of a ranked table: rank, method, checkpoint, headline metrics, sequences, runtime, device.

    Everything else (backbone, protocol, stages, memory, commit, load...) is in the CSV and in each
    record's detail.
    """
    return [
        Column("rank", _rank),
        Column("method", _method, "method"),
        Column("checkpoint", _text("checkpoint")),
        *(Column(f"{key} %", _metric(key), "primary" if key == spec.primary else None) for key in spec.shown),
        Column("sequences", _number("sequences", 0)),
        *runtime_columns(classes, letters),
    ]


def smoke_columns(spec: TaskSpec, classes: list[str], letters: dict[str, str]) -> list[Column]:
    """Columns of the unranked smoke-run table."""
    return [
        Column("data", _text("dataset")),
        Column("method", _method, "method"),
        Column("checkpoint", _text("checkpoint")),
        Column(f"{spec.primary} %", _metric(spec.primary)),
        Column("why not ranked", _text("smoke_reasons")),
        *runtime_columns(classes, letters),
    ]


def reported_columns(spec: TaskSpec) -> list[Column]:
    """Columns of the table of published results of one task."""
    return [
        Column("method", _text("method")),
        Column("backbone", _text("backbone")),
        Column("pretraining", _text("pretraining")),
        Column("protocol group", _group),
        *(Column(f"{key} %", _metric(key)) for key in spec.shown),
        Column("source", _text("source")),
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
