"""The leaderboard as pandas frames: one row per reproduced run or reported result.

Scores become percentages here (records hold fractions). Rows go under the dataset their data *is*
(identified from sequence names and object counts, :mod:`harness.data.identify`), not the task that
read it. Reproduced rows are grouped by (dataset, protocol hash, sequences measured) and ranked by
the task's primary metric *within* a group only: numbers obtained under different protocol
settings, or on different sequences, are not comparable, so they never share a ranking. Smoke runs
(a sliver of the split, ``--limit``, the shipped or a synthetic sample) are never ranked.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.data.identify import describe_run_data, home_split, smoke_reasons, task_of
from harness.leaderboard.cells import is_missing
from harness.leaderboard.collect import Run
from harness.leaderboard.reported import ReportedEntry
from harness.leaderboard.runtime import ms_per_frame, older_code, runtime_class, stage_text
from harness.leaderboard.spec import TASKS, TaskSpec, task_order, task_spec
from harness.runs.schema import CheckpointBlock, EnvBlock, RunRecord, TimingBlock


@dataclass(frozen=True)
class Group:
    """Ranked reproduced runs that may be compared: one dataset section, protocol hash and sequence set."""

    section: str
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
        digest = hashlib.sha256(f"{self.section}|{self.protocol_hash}|{self.data_key}".encode()).hexdigest()[:8]
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

def weights_label(pretraining: Any, checkpoint: CheckpointBlock | None) -> str:
    """What a run's network started from, in a few words for its method label: ``random init``,
    ``ImageNet-1k``, the checkpoint's file name, another hub tag; empty for methods with no weights.

    Read from the record's ``pretraining`` text, so records written before a method refused missing
    weights (``random init (hub unreachable, seed 0)``) are labelled by what they really ran.
    """
    name = Path(checkpoint.path).name if checkpoint is not None else ""
    if isinstance(pretraining, dict):  # trained by the harness or imported: the checkpoint it came from
        return name or _pretraining_label(pretraining)
    text = str(pretraining or "").strip()
    if not text or text == "none":
        return ""
    if "random init" in text:
        return "random init"
    if text.startswith("timm hub "):
        tag = text.removeprefix("timm hub ").split(" ", 1)[0]
        for marks, label in ((("in1k",), "ImageNet-1k"), (("in21k", "in22k"), "ImageNet-21k")):
            if any(mark in tag.rpartition(".")[2] for mark in marks):
                return label
        return f"hub {tag}"
    if text.startswith("ImageNet"):
        return text.split(" (", 1)[0]
    if text.startswith("weights file "):
        return name or Path(text.removeprefix("weights file ")).name
    return text if len(text) <= 40 else text[:39] + "…"


def _relpath(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _pct(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def _sequences(record: RunRecord) -> list[str]:
    if record.data is not None:
        return list(record.data.sequences)
    return sorted(record.per_sequence or {})


def _dataset(record: RunRecord) -> tuple[dict[str, Any], list[str]]:
    """``data.dataset`` as recorded, or identified now from the score blocks (records written before
    version 2); plus the reasons the run is a smoke run (empty: it may be ranked)."""
    data = record.data.model_dump(exclude_unset=True) if record.data is not None else {}
    if record.data is not None and record.data.dataset is not None:
        dataset = record.data.dataset.model_dump(exclude_unset=True)
    else:
        dataset, _ = describe_run_data(record.task, data, record.per_sequence, record.per_object)
    reasons = smoke_reasons(dataset, data)
    if record.smoke and not reasons:
        reasons = ["marked smoke by its runner"]
    return dataset, reasons


def section_of(name: str, split: str | None) -> str:
    """The heading a dataset's rows go under: ``DAVIS-2016 val``; data outside every split apart."""
    return f"{name} {split}" if split else f"{name}, not an official split"


def home_section(task: str) -> str:
    """The section of a task's published numbers (they are for the task's own official split)."""
    split = home_split(task)
    return section_of(split.dataset, split.split) if split is not None else task


def _data_key(record: RunRecord, section: str) -> str:
    """Section plus a digest of the sequence list: same-size subsets of different sequences differ."""
    digest = hashlib.sha256("\n".join(sorted(_sequences(record))).encode()).hexdigest()[:8]
    return f"{section}|{digest}"


def _checkpoint(record: RunRecord) -> tuple[str, str]:
    checkpoint = record.checkpoint
    if checkpoint is None:
        return "", ""
    sha = checkpoint.sha256 or ""
    name = Path(checkpoint.path).name
    return (f"{name} ({sha[:8]})" if name else sha[:8]), sha


def _commit(env: EnvBlock | None) -> str:
    commit = ((env.git_commit if env is not None else None) or "")[:8]
    return f"{commit}+dirty" if commit and env is not None and env.git_dirty else commit


def variant(record: RunRecord) -> str:
    """What tells two runs of one method apart: the feature layer, else a digest of the method config."""
    info = record.method_info or {}
    layer = info.get("layer") or info.get("level")
    if layer:
        return str(layer)
    method_config = (record.config or {}).get("method_config") or {}
    if method_config:
        return "config " + hashlib.sha256(json.dumps(method_config, sort_keys=True).encode()).hexdigest()[:6]
    return ""


def _delta(run: Run, spec: TaskSpec, reported: list[ReportedEntry]) -> tuple[str, float | None]:
    """'reproduced - reported' in points of the primary metric, against every matching entry."""
    value = _pct(run.record.metrics.get(spec.primary))
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


def _total_s(timing: TimingBlock | None) -> float | None:
    """The run's wall time (version 2), else the summed stage time of version 1."""
    if timing is None:
        return None
    return timing.wall_s if "wall_s" in timing.model_fields_set else timing.total_s


def reproduced_row(run: Run, reported: list[ReportedEntry], out_dir: Path) -> dict[str, Any]:
    """Flatten one record into table cells (percentages, short names, relative links)."""
    record = run.record
    spec = task_spec(record.task, record.metrics)
    info = record.method_info or {}
    timing, env, data = record.timing, record.env, record.data
    checkpoint, sha = _checkpoint(record)
    dataset, smoke = _dataset(record)
    section = section_of(str(dataset.get("name")), dataset.get("split"))
    full_split = dataset.get("of_split") is not None and dataset.get("sequences") == dataset.get("of_split")
    # A subset is never set beside published full-split numbers as if comparable.
    delta_text, delta = _delta(run, spec, reported) if full_split else ("", None)
    klass = runtime_class(env)
    load = env.load_avg if env is not None else None
    row: dict[str, Any] = {
        "kind": "reproduced",
        "task": record.task,
        "section": section,
        "home_task": task_of(dataset) or record.task,
        "dataset": dataset.get("label", ""),
        "full_split": full_split,
        "smoke": bool(smoke),
        "smoke_reasons": "; ".join(smoke),
        "protocol": record.protocol.name,
        "protocol_hash": record.protocol.hash,
        "protocol_group": "",
        "data": dataset.get("label", ""),
        "data_key": _data_key(record, section),
        "data_root": data.root if data is not None else "",
        "sequences": len(_sequences(record)),
        "rank": None,
        "method": record.method,
        "variant": variant(record),
        "backbone": info.get("backbone") or "",
        "parameters": info.get("parameters"),
        "pretraining": _pretraining_label(info.get("pretraining")),
        "weights": weights_label(info.get("pretraining"), record.checkpoint),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha,
        "primary_metric": spec.primary,
        "higher_is_better": spec.higher_is_better(spec.primary),
        "delta_vs_reported": delta_text,
        "delta_pts": delta,
        "features_ms_per_frame": timing.features_ms_per_frame if timing is not None else None,
        "propagation_ms_per_frame": timing.propagation_ms_per_frame if timing is not None else None,
        "ms_per_frame": ms_per_frame(timing),
        "stages": stage_text(timing),
        "adapt_s_per_video": timing.adapt_s_per_video if timing is not None else None,
        "total_s": _total_s(timing),
        "peak_rss_mib": timing.peak_rss_mib if timing is not None else None,
        "peak_gpu_mib": timing.peak_gpu_mib if timing is not None else None,
        "frames": timing.frames if timing is not None else None,
        "device": klass.short,
        "runtime_class": klass.label,
        "threads": klass.threads,
        "load_avg": " ".join(f"{v:g}" for v in load) if load is not None else "",
        "dirty": bool(env is not None and env.git_dirty),
        "older_code": older_code(env.git_commit if env is not None else None),
        "package_version": (env.package_version if env is not None else None) or "",
        "date": (record.finished or record.started or "")[:10],
        "commit": _commit(env),
        "source": "",
        "confirmed": None,
        "unconfirmed": (),
        "reported_id": None,
        "record": _relpath(run.path, out_dir),
        "visualizations": tuple(_relpath(run.path.parent / v, out_dir) for v in record.visualizations or ()),
    }
    for key, value in record.metrics.items():
        row[key] = _pct(value)
    return row


def reported_row(entry: ReportedEntry) -> dict[str, Any]:
    """One published result as table cells; never ranked, marked with its source."""
    spec = task_spec(entry.task, entry.metrics)
    row: dict[str, Any] = {
        "kind": "reported",
        "task": entry.task,
        "section": home_section(entry.task),
        "home_task": entry.task,
        "smoke": False,
        "protocol": entry.group.family or "",
        "protocol_hash": "",
        "protocol_group": entry.group.name,
        "method": entry.method,
        "backbone": entry.backbone or "",
        "pretraining": entry.pretraining or "",
        "primary_metric": spec.primary,
        "higher_is_better": spec.higher_is_better(spec.primary),
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
    for task, metrics in [(r.task, r.record.metrics) for r in runs] + [(e.task, e.metrics) for e in reported]:
        keys_by_task.setdefault(task, set()).update(metrics)
    columns: list[str] = []
    for task in sorted(keys_by_task, key=task_order):
        for key in TASKS[task].csv if task in TASKS else sorted(keys_by_task[task]):
            if key not in columns:
                columns.append(key)
    return columns


def section_order(section: str, home_task: str) -> tuple[int, str, str]:
    """Sections in the tasks' fixed order; within a task, its own split first, other data after."""
    return (*task_order(home_task), "" if section == home_section(home_task) else section)


def build_frame(runs: list[Run], reported: list[ReportedEntry], out_dir: Path) -> pd.DataFrame:
    """All rows (reproduced then reported), ranked within groups, in a deterministic order."""
    rows = [reproduced_row(run, reported, out_dir) for run in runs] + [reported_row(e) for e in reported]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["primary_value"] = [row.get(row["primary_metric"]) for row in rows]
    # what ranks: the primary metric, negated where the task declares smaller values better
    frame["rank_value"] = [None if is_missing(v := row.get(row["primary_metric"])) else v if row["higher_is_better"] else -v
                           for row in rows]
    keys = sorted({(r["section"], r["home_task"]) for r in rows}, key=lambda k: section_order(*k))
    frame["section_order"] = frame["section"].map({section: i for i, (section, _) in enumerate(keys)})
    frame = frame.sort_values(
        [
            "section_order", "kind", "smoke", "protocol_group", "protocol", "protocol_hash", "data_key",
            "rank_value", "method", "record", "reported_id",
        ],
        ascending=[True, False, True, True, True, True, True, False, True, True, True],
        na_position="last",
        kind="mergesort",
    ).reset_index(drop=True)
    ranked = (frame["kind"] == "reproduced") & ~frame["smoke"].astype(bool)
    ranks = frame[ranked].groupby(["section", "protocol_hash", "data_key"], sort=False)["rank_value"].rank(
        method="min", ascending=False
    )
    frame["rank"] = pd.Series(ranks, dtype="Int64")
    for column in ("parameters", "frames", "threads", "sequences"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    return frame.drop(columns=["section_order"])


def sections(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(section, home task) in page order."""
    if frame.empty:
        return []
    seen = dict.fromkeys(zip(frame["section"], frame["home_task"], strict=True))
    return list(seen)


def groups(frame: pd.DataFrame, runs: list[Run]) -> list[Group]:
    """Ranked groups in table order, each with the resolved protocol settings it shares."""
    if frame.empty:
        return []
    settings = {run.protocol_hash: run.record.protocol.settings for run in runs}
    ranked = frame[(frame["kind"] == "reproduced") & ~frame["smoke"].astype(bool)]
    out = []
    for (section, protocol_hash, data_key), sub in ranked.groupby(["section", "protocol_hash", "data_key"], sort=False):
        out.append(
            Group(
                section=str(section),
                task=str(sub["home_task"].iloc[0]),
                protocol=str(sub["protocol"].iloc[0]),
                protocol_hash=str(protocol_hash),
                data=str(sub["data"].iloc[0]),
                data_key=str(data_key),
                settings=settings.get(str(protocol_hash), {}),
                frame=sub.reset_index(drop=True),
            )
        )
    return out
