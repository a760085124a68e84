"""The resumable training state file: what it holds, writing it, and reading it back for ``--resume``.

A state file is a dict of tensors and plain values (``torch.load(weights_only=True)`` reads it)::

    {"model", "recipe", "step", "optimizer", "scheduler", "scaler",
     "rng": [every rank's RNG state], "world_size",
     "sampler": {"epoch", "batch", "steps_per_epoch", "seed"},
     "data": [--data folders], "data_fingerprint", "data_changes"}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError, HarnessError
from harness.io import atomic_path, atomic_write_text
from harness.safe_load import load_weights_only
from harness.training.distributed import Dist
from harness.training.provenance import check_training_data
from harness.training.recipes import defaults, flatten
from harness.training.rng import set_rng_state

log = logging.getLogger(__name__)

LOG_NAME = "metrics.jsonl"
REQUIRED_KEYS = {"model", "optimizer", "scheduler", "step", "recipe", "rng", "world_size"}


@dataclass
class Stateful:
    """The objects a state file restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def save_state(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def check_resumable(recipe_model: type, resumable: tuple[str, ...], saved: dict[str, Any], recipe: dict[str, Any],
                    path: Path) -> None:
    """Refuse to resume with a recipe that differs from the saved one outside ``resumable`` keys; keys the saved
    recipe lacks count as their declared defaults (what the run did before the key existed)."""
    old, new = {**defaults(recipe_model), **flatten(saved)}, flatten(recipe)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in resumable)
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise HarnessError(f"--resume: {path} was trained with a different recipe ({details}); use a new --out-dir")


def truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (those after it are redone by the resumed run)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def restore(
    path: Path,
    recipe_model: type,
    resumable: tuple[str, ...],
    recipe: dict[str, Any],
    objects: Stateful,
    ctx: Dist,
    steps_per_epoch: int,
    fingerprint: dict[str, Any],
    allow_data_change: bool,
) -> tuple[int, list[dict[str, Any]]]:
    """Load a state file into the run's objects and this rank's RNG state; returns its step and the
    training-data changes it has seen (:func:`~harness.training.provenance.check_training_data`)."""
    state = load_weights_only(path, "--resume: training checkpoint", map_location=next(objects.model.parameters()).device)
    missing = REQUIRED_KEYS - state.keys()
    if missing:
        raise CheckpointError(f"{path}: cannot resume, missing keys {sorted(missing)}")
    check_resumable(recipe_model, resumable, state["recipe"], recipe, path)
    history = check_training_data(state, fingerprint, allow_data_change, path, int(state["step"]))
    objects.model.load_state_dict(state["model"])
    objects.optimizer.load_state_dict(state["optimizer"])
    objects.scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state:
        objects.scaler.load_state_dict(state["scaler"])
    saved_steps_per_epoch = state.get("sampler", {}).get("steps_per_epoch")
    if saved_steps_per_epoch != steps_per_epoch:
        log.warning(
            "--resume: the training data changed since %s was written (%s steps per epoch, now %d): "
            "the run goes on, but not with the batches the original run would have drawn",
            path, saved_steps_per_epoch, steps_per_epoch,
        )
    if state["world_size"] == ctx.world_size:
        set_rng_state(state["rng"][ctx.rank])
    else:
        log.warning(
            "resuming a %d-rank run on %d ranks: samples are re-sharded, so batches differ from the original run",
            state["world_size"], ctx.world_size,
        )
    return int(state["step"]), history
