"""What a cell costs, before running it: from throughput figures the spec states (with their source).

- A training cell sees ``cost.train_clips`` clips at ``cost.train_clips_per_s`` (measured at clips of
  ``cost.base_clip_len`` frames); a cell with longer clips (recipe key ``data.clip_len``) is assumed to
  run proportionally fewer clips per second (the encoder and the walk both grow linearly with the clip
  length). Either figure may be one number or a mapping of trained method -> number: a sweep that
  trains several methods (grid axis ``trainer``) states each one's rate and budget.
- An evaluation cell costs ``frames × (features + propagation) ms/frame``; with the feature cache,
  only the first cell of a feature group pays for features.

Frames are counted on the sweep's data (DAVIS-style ``JPEGImages/480p/<seq>/``) or taken from
``cost.frames`` when the data is not on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.sweeps.grid import Cell, leaders_first
from harness.sweeps.spec import SweepSpec


@dataclass
class CellCost:
    cell: Cell
    seconds: float | None
    detail: str


def clip_len(spec: SweepSpec, cell: Cell) -> int:
    """The clip length a training cell trains with: its recipe override, else the figures' own."""
    return int(cell.recipe_sets.get("data.clip_len", spec.cost.get("base_clip_len", 4)))


def train_figure(spec: SweepSpec, key: str, method: str) -> float | None:
    """``cost.<key>`` for a cell training ``method``: the number, or the mapping's entry for ``method``."""
    value = spec.cost.get(key)
    if isinstance(value, dict):
        if method not in value:
            raise HarnessError(f"{spec.source}: key 'cost.{key}' has no figure for trained method {method!r} "
                               f"(it gives: {', '.join(value) or 'none'})")
        value = value[method]
    return float(value) if value else None


def count_frames(spec: SweepSpec, task: str) -> int | None:
    """Frames the cells evaluate: ``cost.frames`` if the spec states it, else counted on the data."""
    if spec.cost.get("frames"):
        return int(spec.cost["frames"])
    from harness.data.roots import resolve_data_root
    from harness.registry import get_task

    try:
        root, _ = resolve_data_root(task, spec.data_root)
        reader = get_task(task).factory(root, {"sequences": spec.sequences, "limit": spec.limit})
        names = reader.sequences()
    except (HarnessError, OSError):  # no data here: the estimate says "unknown" rather than guessing
        return None
    images = Path(root) / "JPEGImages" / "480p"
    if not images.is_dir():
        return None
    return sum(len([p for p in (images / n).iterdir() if p.suffix.lower() in (".jpg", ".png")]) for n in names)


def estimate(spec: SweepSpec, cells: list[Cell]) -> list[CellCost]:
    """Estimated seconds per cell, in ``cells`` order (``None`` where the spec lacks a figure)."""
    cost: dict[str, Any] = spec.cost
    leaders, _ = leaders_first(cells)
    pays_features = {id(c) for c in leaders} if spec.feature_cache else {id(c) for c in cells}
    frames_of: dict[str, int | None] = {}
    out = []
    for cell in cells:
        task = str(cell.params.get("task", spec.task))
        if task not in frames_of:
            frames_of[task] = count_frames(spec, task)
        frames = frames_of[task]
        seconds: float | None = 0.0
        parts = []
        if cell.kind == "train":
            method = str(cell.params["method"])
            clips, per_s = train_figure(spec, "train_clips", method), train_figure(spec, "train_clips_per_s", method)
            if clips and per_s:
                length, base = clip_len(spec, cell), int(cost.get("base_clip_len", 4))
                rate = per_s * base / length
                seconds += clips / rate
                scaled = f" (clips of {length}, {per_s:g} at {base})" if length != base else ""
                parts.append(f"train {method} {clips:,.0f} clips at {rate:.4g} clips/s{scaled}")
            else:
                seconds = None
        features = float(cost.get("features_ms_per_frame", 0)) if id(cell) in pays_features else 0.0
        per_frame = features + float(cost.get("propagation_ms_per_frame", 0))
        if frames is None or "propagation_ms_per_frame" not in cost:
            seconds = None
            parts.append("eval: unknown (no frame count or ms/frame)")
        elif seconds is not None:
            seconds += frames * per_frame / 1000
            parts.append(f"eval {frames} frames x {per_frame:g} ms" + ("" if features else " (cached features)"))
        out.append(CellCost(cell, seconds, "; ".join(parts)))
    return out


def human(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
