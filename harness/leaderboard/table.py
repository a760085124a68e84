"""The leaderboard as pandas frames: one row per reproduced run or reported result.

Scores become percentages here (records hold fractions). Reproduced rows are grouped by
(task, protocol hash, data measured on) and ranked by the task's primary metric *within* a group
only: numbers obtained under different protocol settings, or on different sequences, are not
comparable, so they never share a ranking.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.leaderboard.collect import Run
from harness.leaderboard.reported import ReportedEntry
from harness.leaderboard.spec import TASKS, TaskSpec, task_order, task_spec


@dataclass(frozen=True)
class Group:
    """Reproduced runs that may be ranked against each other."""

    task: str
    protocol: str
    protocol_hash: str
    data: str
    data_key: str
    settings: dict[str, Any]
    frame: pd.DataFrame

    @property
    def key(self) -> str:
        """Short, file-name-safe id of the group (for plot names and HTML anchors)."""
        digest = hashlib.sha256(f"{self.task}|{self.protocol_hash}|{self.data_key}".encode()).hexdigest()[:8]
        return f"{self.task}-{self.protocol}-{self.protocol_hash}-{digest}"



def _pretraining_label(value: Any) -> str:
    """A short cell for a record's ``pretraining``: methods trained by the harness store the whole
    recipe there (which belongs in the record, not in a table cell)."""
    if not isinstance(value, dict):
        return str(value or "")
    recipe = value.get("recipe")
    name = recipe.get("name") if isinstance(recipe, dict) else recipe
    parts = [f"recipe {name}" if name else "", f"step {value['step']}" if value.get("step") is not None else "",
             f"by {value['source']}" if value.get("source") else ""]
    return ", ".join(p for p in parts if p) or "see record"

def _relpath(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _pct(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def _data_label(record: dict[str, Any]) -> str:
    """'<root folder> (<n> seq)', flagged when it is the shipped sample or a --limit smoke run."""
    data = record.get("data") or {}
    root = Path(str(data.get("root") or "?")).name or "?"
    sequences = data.get("sequences")
    count = len(sequences) if isinstance(sequences, list) else len(record.get("per_sequence") or {})
    label = f"{root} ({count} seq)"
    if data.get("sample"):
        label += ", sample"
    if data.get("limit") is not None:
        label += f", limit {data['limit']}"
    return label


def _data_key(record: dict[str, Any]) -> str:
    """Label plus a digest of the sequence list: same-size subsets of different clips differ."""
    data = record.get("data") or {}
    sequences = data.get("sequences")
    names = sorted(map(str, sequences)) if isinstance(sequences, list) else sorted(record.get("per_sequence") or {})
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:8]
    return f"{_data_label(record)}|{digest}"


def _checkpoint(record: dict[str, Any]) -> tuple[str, str]:
    checkpoint = record.get("checkpoint")
    if not checkpoint:
        return "", ""
    sha = str(checkpoint.get("sha256", ""))
    name = Path(str(checkpoint.get("path") or "")).name
    return (f"{name} ({sha[:8]})" if name else sha[:8]), sha


def _commit(env: dict[str, Any]) -> str:
    commit = str(env.get("git_commit") or "")[:8]
    return f"{commit}+dirty" if commit and env.get("git_dirty") else commit


def _delta(run: Run, spec: TaskSpec, reported: list[ReportedEntry]) -> tuple[str, float | None]:
    """'reproduced - reported' in points of the primary metric, against every matching entry."""
    value = _pct(run.record["metrics"].get(spec.primary))
    parts: list[str] = []
    first: float | None = None
    for entry in reported:
        if value is None or spec.primary not in entry.metrics or not entry.matches(run):
            continue
        delta = round(value - entry.metrics[spec.primary], 2)
        first = delta if first is None else first
        mark = "" if entry.is_confirmed(spec.primary) else "†"
        parts.append(f"{delta:+.1f} vs {entry.id} ({entry.metrics[spec.primary]:g}{mark})")
    return "; ".join(parts), first


def reproduced_row(run: Run, reported: list[ReportedEntry], out_dir: Path) -> dict[str, Any]:
    """Flatten one record into table cells (percentages, short names, relative links)."""
    record = run.record
    spec = task_spec(record["task"], record["metrics"])
    info = record.get("method_info") or {}
    timing = record.get("timing") or {}
    env = record.get("env") or {}
    checkpoint, sha = _checkpoint(record)
    delta_text, delta = _delta(run, spec, reported)
    features, propagation = timing.get("features_ms_per_frame"), timing.get("propagation_ms_per_frame")
    row: dict[str, Any] = {
        "kind": "reproduced",
        "task": record["task"],
        "protocol": record["protocol"]["name"],
        "protocol_hash": record["protocol"]["hash"],
        "protocol_group": "",
        "data": _data_label(record),
        "data_key": _data_key(record),
        "rank": None,
        "method": record["method"],
        "backbone": info.get("backbone") or "",
        "parameters": info.get("parameters"),
        "pretraining": _pretraining_label(info.get("pretraining")),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha,
        "primary_metric": spec.primary,
        "delta_vs_reported": delta_text,
        "delta_pts": delta,
        "features_ms_per_frame": features,
        "propagation_ms_per_frame": propagation,
        "ms_per_frame": None if features is None or propagation is None else features + propagation,
        "adapt_s_per_video": timing.get("adapt_s_per_video"),
        "total_s": timing.get("total_s"),
        "peak_rss_mib": timing.get("peak_rss_mib"),
        "peak_gpu_mib": timing.get("peak_gpu_mib"),
        "frames": timing.get("frames"),
        "device": env.get("device_name") or env.get("device") or "",
        "date": str(record.get("finished") or record.get("started") or "")[:10],
        "commit": _commit(env),
        "source": "",
        "confirmed": None,
        "unconfirmed": (),
        "reported_id": None,
        "record": _relpath(run.path, out_dir),
        "visualizations": tuple(_relpath(run.path.parent / v, out_dir) for v in record.get("visualizations") or ()),
    }
    for key, value in record["metrics"].items():
        row[key] = _pct(value)
    return row


def reported_row(entry: ReportedEntry) -> dict[str, Any]:
    """One published result as table cells; never ranked, marked with its source."""
    spec = task_spec(entry.task, entry.metrics)
    row: dict[str, Any] = {
        "kind": "reported",
        "task": entry.task,
        "protocol": entry.group.family or "",
        "protocol_hash": "",
        "protocol_group": entry.group.name,
        "method": entry.method,
        "backbone": entry.backbone or "",
        "pretraining": entry.pretraining or "",
        "primary_metric": spec.primary,
        "source": entry.source + (f" ({entry.note})" if entry.note else ""),
        "confirmed": entry.confirmed,
        "unconfirmed": tuple(m for m in entry.metrics if not entry.is_confirmed(m)),
        "reported_id": entry.id,
        "data": "",
        "data_key": None,
        "checkpoint": "",
        "checkpoint_sha256": "",
        "record": None,
        "visualizations": (),
    }
    row.update(entry.metrics)
    return row


def metric_columns(runs: list[Run], reported: list[ReportedEntry]) -> list[str]:
    """All metric columns for the CSV in a fixed order: known tasks' lists, then other tasks' keys sorted."""
    keys_by_task: dict[str, set[str]] = {}
    for task, metrics in [(r.task, r.record["metrics"]) for r in runs] + [(e.task, e.metrics) for e in reported]:
        keys_by_task.setdefault(task, set()).update(metrics)
    columns: list[str] = []
    for task in sorted(keys_by_task, key=task_order):
        for key in TASKS[task].csv if task in TASKS else sorted(keys_by_task[task]):
            if key not in columns:
                columns.append(key)
    return columns


def build_frame(runs: list[Run], reported: list[ReportedEntry], out_dir: Path) -> pd.DataFrame:
    """All rows (reproduced then reported), ranked within groups, in a deterministic order."""
    rows = [reproduced_row(run, reported, out_dir) for run in runs] + [reported_row(e) for e in reported]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["primary_value"] = [row.get(row["primary_metric"]) for row in rows]
    order = {task: i for i, task in enumerate(sorted(set(frame["task"]), key=task_order))}
    frame["task_order"] = frame["task"].map(order)
    frame = frame.sort_values(
        [
            "task_order", "kind", "protocol_group", "protocol", "protocol_hash", "data_key",
            "primary_value", "method", "record", "reported_id",
        ],
        ascending=[True, False, True, True, True, True, False, True, True, True],
        na_position="last",
        kind="mergesort",
    ).reset_index(drop=True)
    repro = frame["kind"] == "reproduced"
    ranks = frame[repro].groupby(["task", "protocol_hash", "data_key"], sort=False)["primary_value"].rank(
        method="min", ascending=False
    )
    frame["rank"] = pd.Series(ranks, dtype="Int64")
    for column in ("parameters", "frames"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    return frame.drop(columns=["task_order"])


def groups(frame: pd.DataFrame, runs: list[Run]) -> list[Group]:
    """Reproduced groups in table order, each with the resolved protocol settings it shares."""
    if frame.empty:
        return []
    settings = {run.protocol_hash: run.record["protocol"].get("settings") or {} for run in runs}
    repro = frame[frame["kind"] == "reproduced"]
    out = []
    for (task, protocol_hash, data_key), sub in repro.groupby(["task", "protocol_hash", "data_key"], sort=False):
        out.append(
            Group(
                task=str(task),
                protocol=str(sub["protocol"].iloc[0]),
                protocol_hash=str(protocol_hash),
                data=str(sub["data"].iloc[0]),
                data_key=str(data_key),
                settings=settings.get(str(protocol_hash), {}),
                frame=sub.reset_index(drop=True),
            )
        )
    return out
