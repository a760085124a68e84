"""Expanding a spec into cells: each cell is an ordinary ``harness run`` (after a ``harness train`` for
training sweeps) with its own output folder, so resume, hashes and records work exactly as for a
hand-typed command.

Layout of a sweep folder (``<results root>/sweeps/<name>/`` by default, the root as ``harness run`` picks it)::

    <cell-id>/            the cell's `harness run --out-dir` (record.json, predictions)
    training/<cell-id>/   the cell's `harness train --out-dir` (training sweeps)
    state/<cell-id>.json  what the sweep knows of the cell (job id, status, digest)
    logs/<cell-id>.log    the cell's stdout and stderr
    features/             the shared feature cache (`harness run --feature-cache`)
    submitit/             the scheduler's job files
    report.csv, report.md, plot-*.svg
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natsort import natsorted

from harness.errors import HarnessError
from harness.sweeps.spec import EVAL_PREFIXES, RECIPE_PREFIX, TRAINER_AXIS, SweepSpec, trainer_label

STEP_RE = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class Layout:
    """Where everything of one sweep lives."""

    root: Path

    def cell_dir(self, cell_id: str) -> Path:
        return self.root / cell_id

    def train_dir(self, cell_id: str) -> Path:
        return self.root / "training" / cell_id

    def state_path(self, cell_id: str) -> Path:
        return self.root / "state" / f"{cell_id}.json"

    def log_path(self, cell_id: str) -> Path:
        return self.root / "logs" / f"{cell_id}.log"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def submitit(self) -> Path:
        return self.root / "submitit"

    @property
    def lock(self) -> Path:
        return self.root / "sweep.lock"


@dataclass
class Cell:
    """One point of the grid and the commands that compute it."""

    id: str
    kind: str  # "eval" (harness run) or "train" (harness train, then harness run on its checkpoint)
    params: dict[str, Any]  # axis -> value, as the table shows it (checkpoint series add `step`)
    run_args: list[str]
    train_args: list[str] | None
    checkpoint: str | None  # the file the evaluation reads (for train cells: the one training writes)
    feature_group: str  # cells with equal groups compute identical features
    record: Path = field(default=Path())
    train_state: Path | None = None  # train cells: the resumable state file training writes (its presence means resume)
    recipe_sets: dict[str, Any] = field(default_factory=dict)  # train cells: every `harness train --set` override

    @property
    def digest(self) -> str:
        """What the cell computes: a changed command makes a finished cell stale."""
        blob = json.dumps({"run": self.run_args, "train": self.train_args}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def commands(self) -> list[list[str]]:
        return [args for args in (self.train_args, self.run_args) if args is not None]


def value_arg(value: Any) -> str:
    """A ``--set`` value as YAML reads it back (strings as is, everything else as JSON, which is YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+@-]+", "_", text).strip("_") or "x"


def checkpoint_series(folder: str, eval_file: str) -> list[tuple[int, str]]:
    """``(step, path)`` of ``<folder>/eval/step-<N>/<eval_file>`` (``harness train --eval-every``), in step order."""
    root = Path(folder) / "eval"
    if not root.is_dir():
        raise HarnessError(f"checkpoint series {folder}: no eval/ folder (train with --eval-every N to write eval/step-<N>/)")
    found = []
    for path in natsorted(root.glob(f"step-*/{eval_file}"), key=str):
        match = STEP_RE.match(path.parent.name)
        if match:
            found.append((int(match.group(1)), str(path.resolve())))
    if not found:
        raise HarnessError(f"checkpoint series {folder}: no eval/step-<N>/{eval_file} inside")
    return sorted(found)


def _trainer(method: str) -> Any:
    from harness.registry import get_trainer

    return get_trainer(method).load()


def _series_eval_file(spec: SweepSpec) -> str:
    """The evaluation-only file name of the grid's method(s), whose trainer wrote the series."""
    names = {_trainer(str(m)).eval_file for m in spec.grid.get("method", [])}
    if len(names) != 1:
        raise HarnessError(f"{spec.source}: a checkpoint series is evaluated by the method that trained it; give the "
                           "grid exactly one trainable method (or methods whose trainers write the same file)")
    return names.pop()


def _axes(spec: SweepSpec) -> list[tuple[str, list[Any]]]:
    axes = []
    for key, values in spec.grid.items():
        if key == "checkpoint" and values and isinstance(values[0], dict):
            series = checkpoint_series(values[0]["series"], _series_eval_file(spec))
            values = [{"step": step, "path": path} for step, path in series]
        axes.append((key, values))
    return axes


def _label(key: str, value: Any) -> str:
    if key == "checkpoint":
        if isinstance(value, dict):
            return f"step-{value['step']}"
        return "default" if value is None else Path(value).stem
    if key in ("method", "task"):
        return _safe(str(value))
    if key == TRAINER_AXIS:
        return _safe(trainer_label(value))
    return f"{_safe(key.split('.')[-1])}-{_safe(value_arg(value))}"


def expand(spec: SweepSpec, root: Path) -> list[Cell]:
    """All cells of ``spec`` in grid order (the first axis varies slowest), laid out under ``root``."""
    layout = Layout(root)
    axes = _axes(spec)
    if spec.train is not None and "method" in spec.grid:
        raise HarnessError(f"{spec.source}: a training sweep evaluates the method it trains (train.method, or each "
                           "`trainer` value's); drop grid axis `method`")
    named = [key for key, values in axes if len(values) > 1]
    cells: list[Cell] = []
    for combo in itertools.product(*(values for _, values in axes)):
        point = dict(zip((key for key, _ in axes), combo, strict=True))
        cell_id = "__".join(_label(k, point[k]) for k in named) or "cell"
        cells.append(_cell(spec, layout, cell_id, point))
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise HarnessError(f"{spec.source}: two grid points give the same cell folder name; make the values distinct")
    return cells


def _cell(spec: SweepSpec, layout: Layout, cell_id: str, point: dict[str, Any]) -> Cell:
    sets = {**spec.set, **{k: v for k, v in point.items() if k.startswith(EVAL_PREFIXES + (RECIPE_PREFIX,))}}
    task = point.get("task", spec.task)
    params: dict[str, Any] = {}
    for key, value in point.items():
        if key == "checkpoint" and isinstance(value, dict):
            params["checkpoint"], params["step"] = value["path"], value["step"]
        elif key == TRAINER_AXIS:
            params[key] = trainer_label(value)
        else:
            params[key] = value
    train_args, train_state, recipe_sets = None, None, {}
    if spec.train is not None:
        chosen = point.get(TRAINER_AXIS) or spec.train  # the cell's trainer value, else the one train.method
        method = str(chosen["method"])
        train_dir = layout.train_dir(cell_id)
        trainer = _trainer(method)
        checkpoint = str(train_dir / (chosen.get("checkpoint_file") or trainer.eval_file))
        train_state = train_dir / trainer.state_file
        recipe_sets = recipe_overrides(spec, sets, point.get(TRAINER_AXIS))
        train_args = ["train", "--method", method, "--recipe", str(chosen["recipe"])]
        for data in spec.train["data"]:
            train_args += ["--data", data]
        train_args += ["--out-dir", str(train_dir), "--device", spec.device]
        if spec.train.get("max_steps"):
            train_args += ["--max-steps", str(spec.train["max_steps"])]
        for key, value in recipe_sets.items():
            train_args += ["--set", f"{key}={value_arg(value)}"]
        params.setdefault("method", method)
    else:
        method = point["method"]
        checkpoint = params.get("checkpoint")
    run_args = ["run", "--method", method, "--task", task, "--protocol", spec.protocol]
    if spec.data_root:
        run_args += ["--data-root", spec.data_root]
    if spec.sequences:
        run_args += ["--sequences", ",".join(spec.sequences)]
    if spec.limit:
        run_args += ["--limit", str(spec.limit)]
    if checkpoint:
        run_args += ["--checkpoint", checkpoint]
    for key, value in sets.items():
        if not key.startswith(RECIPE_PREFIX):
            run_args += ["--set", f"{key}={value_arg(value)}"]
    run_args += ["--device", spec.device, "--out-dir", str(layout.cell_dir(cell_id))]
    if spec.feature_cache:
        run_args += ["--feature-cache", str(layout.features)]
    group = json.dumps([method, checkpoint, task, spec.data_root, spec.sequences, spec.limit, spec.device,
                        sorted((k, repr(v)) for k, v in sets.items() if k.startswith(("method.", "task.")))])
    return Cell(id=cell_id, kind="train" if train_args else "eval", params=params, run_args=run_args,
                train_args=train_args, checkpoint=checkpoint, feature_group=group,
                record=layout.cell_dir(cell_id) / "record.json", train_state=train_state, recipe_sets=recipe_sets)


def recipe_overrides(spec: SweepSpec, sets: dict[str, Any], trainer: dict[str, Any] | None) -> dict[str, Any]:
    """A training cell's recipe overrides: ``train.set``, then its ``trainer`` value's ``set`` (if the grid has that
    axis), then the ``recipe.*`` keys of ``sets`` (the spec's ``set`` and the cell's grid point), each over the ones
    before."""
    assert spec.train is not None
    return {**(spec.train.get("set") or {}), **((trainer or {}).get("set") or {}),
            **{k[len(RECIPE_PREFIX):]: v for k, v in sets.items() if k.startswith(RECIPE_PREFIX)}}


def leaders_first(cells: list[Cell]) -> tuple[list[Cell], list[Cell]]:
    """The first cell of every feature group, then the rest: the rest reuse the leaders' cached features."""
    seen: set[str] = set()
    leaders, followers = [], []
    for cell in cells:
        (followers if cell.feature_group in seen else leaders).append(cell)
        seen.add(cell.feature_group)
    return leaders, followers
