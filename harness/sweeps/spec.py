"""A sweep specification: one YAML file that says which methods × checkpoints × knobs to run on which task.

A spec is read, merged with a named scale (``--scale demo``) and validated in one place: its shape is
declared as pydantic models (:class:`SweepFile` and its sections) read through
:func:`harness.declared.read_model`, so a typo in a key is an error naming the spec, the key and the
closest known keys rather than a sweep that silently ignores it. Presets ship as package data in
``harness/sweeps/presets/`` and in the preset folders trainers register (their training sweeps), and
are named without their ``.yaml``.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from harness.declared import Declared, read_model
from harness.errors import HarnessError
from harness.io import read_yaml
from harness.runs.record import REPO_ROOT

#: grid axes that are not ``--set`` overrides
PLAIN_AXES = ("method", "checkpoint", "task", "trainer")
#: the grid axis whose values each name a method and recipe to train (training sweeps only)
TRAINER_AXIS = "trainer"
#: prefixes of grid keys / ``set`` keys: evaluation overrides and training-recipe overrides
EVAL_PREFIXES = ("protocol.", "method.", "task.")
RECIPE_PREFIX = "recipe."
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _not_a_flag(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is needed, not true/false")
    return value


def _null_is_empty(value: Any) -> Any:
    return {} if value is None else value


#: a section that may be left out or written as null (then it states nothing)
Section = BeforeValidator(_null_is_empty)
#: a count of at least 1 (``2.5`` and ``true`` refused)
Count = Annotated[int, BeforeValidator(_not_a_flag), Field(ge=1)]
#: a count that may be 0 (GPUs of a CPU cell)
Amount = Annotated[int, BeforeValidator(_not_a_flag), Field(ge=0)]
#: a positive number, kept as written (an int stays an int: messages print it as given)
Positive = Annotated[int | float, BeforeValidator(_not_a_flag), Field(gt=0, allow_inf_nan=False)]
#: a throughput figure (0 counts as not stated), kept as written
Figure = Annotated[int | float, BeforeValidator(_not_a_flag), Field(ge=0, allow_inf_nan=False)]


class TrainSection(Declared):
    """``train``: one training per cell before it is evaluated (``harness train`` arguments). ``method`` and
    ``recipe`` name the one trainer of every cell, unless the grid has a ``trainer`` axis, which names them per cell."""

    method: str | None = None
    recipe: str | None = None
    data: str | list[str]
    max_steps: Count | None = None
    set: dict[str, Any] | None = None
    checkpoint_file: str | None = None


class TrainerValue(Declared):
    """One value of the grid axis ``trainer``: the method whose registered trainer trains the cell, its recipe,
    overrides of that recipe for this trainer only (``set``, recipe keys as ``harness train --set`` takes them)
    and the file its evaluation reads (default: the trainer's ``eval_file``)."""

    method: str
    recipe: str
    set: dict[str, Any] | None = None
    checkpoint_file: str | None = None


class ResourceSection(Declared):
    """``resources.train`` / ``resources.eval``: what one cell of that kind asks for."""

    gpus: Amount | None = None
    cpus: Count | None = None
    timeout_min: Positive | None = None
    mem_gb: Positive | None = None


class ResourcesSection(Declared):
    """``resources``: per kind of cell."""

    train: Annotated[ResourceSection, Section] = ResourceSection()
    eval: Annotated[ResourceSection, Section] = ResourceSection()


class SlurmSection(Declared):
    """``slurm``: scheduler parameters (flags override them)."""

    partition: str | None = None
    array_parallelism: Count | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    additional: dict[str, Any] | None = None


class LocalSection(Declared):
    """``local``: the local executor."""

    parallel: Count | None = None
    timeout_min: Positive | None = None


#: a training figure: one number for every trained method, or a mapping method -> number
PerMethod = Figure | dict[str, Figure]
#: the ``cost`` keys that may be given per trained method
PER_METHOD_COSTS = ("train_clips_per_s", "train_clips")


class CostSection(Declared):
    """``cost``: throughput figures for the estimate (:mod:`harness.sweeps.cost`), with their source.
    ``train_clips_per_s`` and ``train_clips`` are one number or a mapping of trained method -> number."""

    source: str | None = None
    train_clips_per_s: PerMethod | None = None
    train_clips: PerMethod | None = None
    base_clip_len: Count | None = None
    features_ms_per_frame: Figure | None = None
    propagation_ms_per_frame: Figure | None = None
    frames: Amount | None = None
    eval_source: str | None = None


class SweepFile(Declared):
    """A sweep spec file, after its ``scales`` are taken out and ``scales[scale]`` is merged over it.
    ``grid`` and ``set`` keys are checked further by :func:`load_spec` (their names are prefixes, not
    fixed keys)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    name: str
    task: str
    grid: Any
    description: str = ""
    protocol: str = "crw"
    data_root: str | None = None
    sequences: list[str] | str | None = None
    limit: Annotated[int, Field(strict=True, ge=1)] | None = None
    device: str = "auto"
    set: dict[str, Any] | None = None
    train: TrainSection | None = None
    resources: Annotated[ResourcesSection, Section] = ResourcesSection()
    slurm: Annotated[SlurmSection, Section] = SlurmSection()
    local: Annotated[LocalSection, Section] = LocalSection()
    cost: Annotated[CostSection, Section] = CostSection()
    feature_cache: bool = True


def _given(section: Declared) -> dict[str, Any]:
    """A section as the spec gave it (only the keys it wrote, null ones left out), as a plain mapping."""
    return section.model_dump(exclude_unset=True, exclude_none=True)


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
        if key == TRAINER_AXIS and not has_train:
            raise HarnessError(f"{label}: grid axis 'trainer' names what each cell trains, but the spec has no `train` "
                               "block (it gives the training data and max_steps of every trainer)")
        if key == "checkpoint" and isinstance(values, dict):
            if set(values) != {"series"}:
                raise HarnessError(f"{label}: `checkpoint` is a list of files or {{series: TRAINING_DIR}}")
            out[key] = [values]
            continue
        if not isinstance(values, list) or not values:
            raise HarnessError(f"{label}: grid axis {key!r} needs a non-empty list of values")
        if key == TRAINER_AXIS:
            values = [_trainer_value(label, i, v) for i, v in enumerate(values)]
        if len({repr(v) for v in values}) != len(values):
            raise HarnessError(f"{label}: grid axis {key!r} repeats a value: {values}")
        out[key] = values
    if has_train and "checkpoint" in out:
        raise HarnessError(f"{label}: a training sweep evaluates the checkpoints it trains; drop grid axis `checkpoint`")
    return out


def _trainer_value(label: str, index: int, value: Any) -> dict[str, Any]:
    """Value ``index`` of the ``trainer`` axis, validated as :class:`TrainerValue`, as the keys it gave."""
    if not isinstance(value, dict):
        raise HarnessError(f"{label}: grid axis 'trainer' value {index} must be a mapping "
                           f"{{method: M, recipe: R}} (optionally set: {{...}}), got {value!r}")
    return _given(read_model(TrainerValue, value, label, prefix=f"grid.trainer.{index}."))


def trainer_label(trainer: dict[str, Any]) -> str:
    """How a ``trainer`` value is shown in cell ids and tables: ``<method>-<recipe>``."""
    return f"{trainer['method']}-{trainer['recipe']}"


def _check_train(label: str, train: dict[str, Any], grid: dict[str, list[Any]]) -> None:
    """``train.method``/``train.recipe`` name the trainer unless the grid's ``trainer`` axis does: exactly one of the two."""
    if TRAINER_AXIS in grid:
        for key in ("method", "recipe", "checkpoint_file"):
            if key in train:
                raise HarnessError(f"{label}: key 'train.{key}' is given per cell by grid axis 'trainer'; "
                                   f"drop it from `train` (or write it in each trainer value)")
        return
    for key in ("method", "recipe"):
        if key not in train:
            raise HarnessError(f"{label}: key 'train.{key}' is missing (or give the grid a `trainer` axis of "
                               "{method: M, recipe: R} values)")


def trained_methods(spec: SweepSpec) -> list[str]:
    """The methods a training sweep trains (its ``trainer`` values' or ``train.method``), in grid order."""
    if spec.train is None:
        return []
    if TRAINER_AXIS in spec.grid:
        return list(dict.fromkeys(str(t["method"]) for t in spec.grid[TRAINER_AXIS]))
    return [str(spec.train["method"])]


def _check_cost(label: str, spec: SweepSpec) -> None:
    """A per-method cost figure names exactly the methods the sweep trains."""
    methods = trained_methods(spec)
    for key in PER_METHOD_COSTS:
        figures = spec.cost.get(key)
        if not isinstance(figures, dict):
            continue
        for method in methods:
            if method not in figures:
                raise HarnessError(f"{label}: key 'cost.{key}' has no figure for trained method {method!r} "
                                   f"(it gives: {', '.join(figures) or 'none'})")
        for name in figures:
            if name not in methods:
                raise HarnessError(f"{label}: key 'cost.{key}.{name}' names no method this sweep trains "
                                   f"(it trains: {', '.join(methods) or 'none'})")


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
    spec = read_model(SweepFile, raw, label)
    if not NAME_RE.match(spec.name):
        raise HarnessError(f"{label}: name {spec.name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    train = None
    if spec.train is not None:
        data = spec.train.data if isinstance(spec.train.data, list) else [spec.train.data]
        train = {**_given(spec.train), "data": [_relative(d, base_dir) for d in data]}
    sets = spec.set or {}
    for key in sets:
        if not key.startswith(EVAL_PREFIXES) and not key.startswith(RECIPE_PREFIX):
            raise HarnessError(f"{label}: set key {key!r} must start with protocol., method., task. or recipe.")
    grid = _check_grid(label, spec.grid, train is not None)
    if train is not None:
        _check_train(label, train, grid)
    if "method" not in grid and train is None:
        raise HarnessError(f"{label}: the grid needs a `method` axis (one or more method names)")
    sequences = spec.sequences
    if isinstance(sequences, str):
        sequences = [s.strip() for s in sequences.split(",") if s.strip()]
    if "checkpoint" in grid and grid["checkpoint"] and isinstance(grid["checkpoint"][0], dict):
        grid["checkpoint"] = [{"series": _relative(grid["checkpoint"][0]["series"], base_dir)}]
    elif "checkpoint" in grid:
        grid["checkpoint"] = [None if c is None else _relative(c, base_dir) for c in grid["checkpoint"]]
    out = SweepSpec(
        name=spec.name, task=spec.task, grid=grid, source=label, description=spec.description.strip(),
        protocol=spec.protocol, data_root=_relative(spec.data_root, base_dir), sequences=sequences, limit=spec.limit,
        device=spec.device, set=dict(sets), train=train, resources=_given(spec.resources), slurm=_given(spec.slurm),
        local=_given(spec.local), cost=_given(spec.cost), feature_cache=spec.feature_cache, scale=scale,
    )
    _check_cost(label, out)
    return out


def _relative(value: Any, base_dir: Path) -> str | None:
    """Paths in a spec file are relative to the file (presets: to the repository root); ``~`` and environment
    variables (``$HARNESS_VIDEOS``) expand, so a preset names data on the user's machine, not ours. An unset
    variable is an error naming it."""
    if value is None:
        return None
    text = os.path.expandvars(str(value))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)
    if unset:
        raise HarnessError(f"sweep spec path {value!r} needs the environment variable {unset[0]}: set it to the folder it names")
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())
