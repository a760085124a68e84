"""A sweep specification: one YAML file that says which methods × checkpoints × knobs to run on which task.

A spec is read, merged with a named scale (``--scale demo``) and validated in one place, so that a
typo in a key is an error naming it rather than a sweep that silently ignores it. Presets ship as
package data in ``harness/sweeps/presets/`` and in the preset folders trainers register (their
training sweeps), and are named without their ``.yaml``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_yaml
from harness.runs.record import REPO_ROOT

TOP_KEYS = {"name", "description", "task", "protocol", "data_root", "sequences", "limit", "device", "grid",
            "set", "train", "resources", "slurm", "local", "cost", "scales", "feature_cache"}
#: grid axes that are not ``--set`` overrides
PLAIN_AXES = ("method", "checkpoint", "task")
#: prefixes of grid keys / ``set`` keys: evaluation overrides and training-recipe overrides
EVAL_PREFIXES = ("protocol.", "method.", "task.")
RECIPE_PREFIX = "recipe."
TRAIN_KEYS = {"method", "recipe", "data", "max_steps", "set", "checkpoint_file"}
RESOURCE_KEYS = {"gpus", "cpus", "timeout_min", "mem_gb"}
SLURM_KEYS = {"partition", "array_parallelism", "account", "qos", "constraint", "additional"}
COST_KEYS = {"source", "train_clips_per_s", "train_clips", "base_clip_len", "features_ms_per_frame",
             "propagation_ms_per_frame", "frames", "eval_source"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class SweepSpec:
    """A validated sweep. ``grid`` keeps the file's axis order: it is the order of cells and of table columns."""

    name: str
    task: str
    grid: dict[str, list[Any]]
    source: str
    description: str = ""
    protocol: str = "crw"
    data_root: str | None = None
    sequences: list[str] | None = None
    limit: int | None = None
    device: str = "auto"
    set: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] | None = None
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    feature_cache: bool = True
    scale: str | None = None

    def resource(self, kind: str) -> dict[str, Any]:
        """Resources of one ``train`` or ``eval`` cell, with the defaults filled in."""
        defaults = {"train": {"gpus": 1, "cpus": 10, "timeout_min": 60 * 72},
                    "eval": {"gpus": 1, "cpus": 8, "timeout_min": 120}}[kind]
        return {**defaults, **self.resources.get(kind, {})}


def _presets() -> dict[str, Any]:
    """Preset name → file: the harness's own and those of every registered trainer."""
    from harness.registry import get_trainer, list_trainers

    folders = [resources.files("harness.sweeps") / "presets"]
    folders += [Path(d) for d in (get_trainer(n).sweep_dir for n in list_trainers()) if d is not None and Path(d).is_dir()]
    return {p.name[:-5]: p for folder in folders for p in folder.iterdir() if p.name.endswith(".yaml")}


def preset_names() -> list[str]:
    return sorted(_presets())


def _read(source: str) -> tuple[dict[str, Any], str, Path]:
    """The raw mapping, a label for messages, and the folder relative paths in it are read from."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise HarnessError(f"sweep spec {source}: no such file")
        return read_yaml(path, "a sweep spec"), str(path), path.resolve().parent
    presets = _presets()
    if source in presets:
        with resources.as_file(presets[source]) as file:
            return read_yaml(file, "a sweep preset"), f"preset {source}", REPO_ROOT
    raise HarnessError(f"sweep {source!r} is neither a YAML file nor a preset (presets: {', '.join(preset_names())})")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "grid":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _unknown(where: str, given: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def _check_grid(label: str, grid: Any, has_train: bool) -> dict[str, list[Any]]:
    if not isinstance(grid, dict) or not grid:
        raise HarnessError(f"{label}: `grid` must be a mapping of axis -> list of values")
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        recipe = key.startswith(RECIPE_PREFIX)
        if key not in PLAIN_AXES and not key.startswith(EVAL_PREFIXES) and not recipe:
            raise HarnessError(f"{label}: grid axis {key!r} is not one of {', '.join(PLAIN_AXES)} nor "
                               f"protocol.*, method.*, task.*, recipe.*")
        if recipe and not has_train:
            raise HarnessError(f"{label}: grid axis {key!r} overrides a training recipe, but the spec has no `train`")
        if key == "checkpoint" and isinstance(values, dict):
            if set(values) != {"series"}:
                raise HarnessError(f"{label}: `checkpoint` is a list of files or {{series: TRAINING_DIR}}")
            out[key] = [values]
            continue
        if not isinstance(values, list) or not values:
            raise HarnessError(f"{label}: grid axis {key!r} needs a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise HarnessError(f"{label}: grid axis {key!r} repeats a value: {values}")
        out[key] = values
    if has_train and "checkpoint" in out:
        raise HarnessError(f"{label}: a training sweep evaluates the checkpoints it trains; drop grid axis `checkpoint`")
    return out


def load_spec(source: str, scale: str | None = None) -> SweepSpec:
    """Read a spec file or preset, apply ``scales[scale]`` over it, and validate every key."""
    raw, label, base_dir = _read(source)
    if not isinstance(raw, dict):
        raise HarnessError(f"{label}: a sweep spec is a YAML mapping")
    scales = raw.pop("scales", {}) or {}
    if scale is not None:
        if scale not in scales:
            raise HarnessError(f"{label}: no scale {scale!r} (has: {', '.join(scales) or 'none'})")
        raw = _merge(raw, scales[scale])
    _unknown(label, raw, TOP_KEYS)
    for key in ("name", "task", "grid"):
        if key not in raw:
            raise HarnessError(f"{label}: missing required key `{key}`")
    name = str(raw["name"])
    if not NAME_RE.match(name):
        raise HarnessError(f"{label}: name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    train = raw.get("train")
    if train is not None:
        _unknown(f"{label}: train", train, TRAIN_KEYS)
        for key in ("method", "recipe", "data"):
            if key not in train:
                raise HarnessError(f"{label}: train needs `{key}`")
        data = train["data"] if isinstance(train["data"], list) else [train["data"]]
        train = {**train, "data": [_relative(d, base_dir) for d in data]}
    for kind, res in (raw.get("resources") or {}).items():
        if kind not in ("train", "eval"):
            raise HarnessError(f"{label}: resources has `train` and `eval`, not {kind!r}")
        _unknown(f"{label}: resources.{kind}", res, RESOURCE_KEYS)
    _unknown(f"{label}: slurm", raw.get("slurm") or {}, SLURM_KEYS)
    _unknown(f"{label}: local", raw.get("local") or {}, {"parallel", "timeout_min"})
    _unknown(f"{label}: cost", raw.get("cost") or {}, COST_KEYS)
    sets = raw.get("set") or {}
    for key in sets:
        if not key.startswith(EVAL_PREFIXES) and not key.startswith(RECIPE_PREFIX):
            raise HarnessError(f"{label}: set key {key!r} must start with protocol., method., task. or recipe.")
    grid = _check_grid(label, raw["grid"], train is not None)
    if "method" not in grid and train is None:
        raise HarnessError(f"{label}: the grid needs a `method` axis (one or more method names)")
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise HarnessError(f"{label}: limit must be a positive integer, got {limit!r}")
    sequences = raw.get("sequences")
    if isinstance(sequences, str):
        sequences = [s.strip() for s in sequences.split(",") if s.strip()]
    if "checkpoint" in grid and grid["checkpoint"] and isinstance(grid["checkpoint"][0], dict):
        grid["checkpoint"] = [{"series": _relative(grid["checkpoint"][0]["series"], base_dir)}]
    elif "checkpoint" in grid:
        grid["checkpoint"] = [None if c is None else _relative(c, base_dir) for c in grid["checkpoint"]]
    return SweepSpec(
        name=name, task=str(raw["task"]), grid=grid, source=label, description=str(raw.get("description", "")).strip(),
        protocol=str(raw.get("protocol", "crw")), data_root=_relative(raw.get("data_root"), base_dir),
        sequences=sequences, limit=limit, device=str(raw.get("device", "auto")), set=dict(sets), train=train,
        resources=dict(raw.get("resources") or {}), slurm=dict(raw.get("slurm") or {}),
        local=dict(raw.get("local") or {}), cost=dict(raw.get("cost") or {}),
        feature_cache=bool(raw.get("feature_cache", True)), scale=scale,
    )


def _relative(value: Any, base_dir: Path) -> str | None:
    """Paths in a spec file are relative to the file (presets: to the repository, so ``../shared`` works); ``~`` expands."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())
