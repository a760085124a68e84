"""Label-propagation scores while a method trains (``harness train --eval-every N``).

Every N steps and at the end, the trainer exports the evaluation-only checkpoint of the current
weights to ``<out-dir>/eval/step-<N>/<eval file>`` and the ordinary runner evaluates it
(:func:`harness.runs.runner.run` with a :class:`~harness.config.RunConfig` for the trainer's method),
so the score and the protocol hash are those ``harness run --method <method> --checkpoint
eval/step-<N>/<eval file>`` gives on the same data. Without ``--eval-data-root`` that is the
shipped sample: a smoke number. Each entry names its data as the leaderboard would (the identified
split, else the folder) and says why its number is a smoke number, if it is. Each evaluation
appends one ``{"kind": "eval", …}`` line to ``metrics.jsonl``; the loop then redraws ``curve.svg``
(:mod:`harness.training.curve`).

Only rank 0 evaluates; the other ranks wait at a barrier (the process group's timeout is long
enough, see :data:`harness.training.distributed.DIST_TIMEOUT`). The global RNG state is put back
after each evaluation so that evaluating never changes the training run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.training.options import EvalOptions
from harness.training.rng import rng_state, set_rng_state

if TYPE_CHECKING:
    from harness.training.contract import Trainer

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
EVAL_KIND = "eval"


def eval_folder(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / EVAL_DIR / f"step-{step}"


def is_eval_entry(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == EVAL_KIND


def read_entries(log_path: Path) -> list[dict[str, Any]]:
    """Every line of a ``metrics.jsonl``, training steps and evaluations alike."""
    return [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]


def evaluated_steps(log_path: Path) -> set[int]:
    """Steps that already have an evaluation entry in ``metrics.jsonl`` (a resumed run skips them)."""
    if not Path(log_path).is_file():
        return set()
    return {int(e["step"]) for e in read_entries(log_path) if is_eval_entry(e)}


def evaluate_step(trainer: Trainer, out_dir: Path, step: int, model_state: dict[str, torch.Tensor],
                  recipe: dict[str, Any], options: EvalOptions) -> dict[str, Any]:
    """Export ``eval/step-<step>/<eval file>``, evaluate it with the runner, return the metrics.jsonl entry."""
    from harness.config import RunConfig
    from harness.registry import get_task
    from harness.runs.runner import run

    out_dir = Path(out_dir).resolve()
    folder = eval_folder(out_dir, step)
    if (folder / "run").exists():  # left by an evaluation interrupted before its entry was logged
        shutil.rmtree(folder / "run")
    checkpoint = Path(trainer.export_eval(model_state, recipe, step, folder / trainer.eval_file))
    config = RunConfig(
        method=trainer.method, task=options.task, data_root=options.data_root, sequences=options.sequences,
        limit=options.limit, checkpoint=str(checkpoint), device=options.device, out_dir=str(folder / "run"),
    )
    saved_rng = rng_state()
    started = time.perf_counter()
    try:
        record_path = Path(run(config))
    finally:
        set_rng_state(saved_rng)
    wall_s = time.perf_counter() - started
    record = json.loads(record_path.read_text())
    metrics = record["metrics"]
    primary = get_task(record["task"]).metric
    entry = {
        "kind": EVAL_KIND,
        "step": step,
        "method": record["method"],
        "task": record["task"],
        "metric": primary,
        "score": metrics.get(primary),
        "metrics": metrics,
        "smoke": bool(record.get("smoke", False)),
        "data": {"root": record["data"]["root"], "sample": record["data"].get("sample"),
                 "sequences": record["data"]["sequences"], "dataset": record["data"].get("dataset")},
        "protocol_hash": record["protocol"]["hash"],
        "checkpoint": str(checkpoint.relative_to(out_dir)),
        "checkpoint_sha256": record["checkpoint"]["sha256"],
        "record": str(record_path.resolve().relative_to(out_dir)),
        "timing": {"wall_s": wall_s, "run_timing": record.get("timing", {})},
    }
    entry["data"]["label"] = data_label(record)
    log.info("step %d: %s %s = %.4f on %s (%s) (%.1f s)", step, record["task"], primary, entry["score"] or float("nan"),
             ",".join(entry["data"]["sequences"]), entry["data"]["label"], wall_s)
    return entry


def data_label(record: dict[str, Any]) -> str:
    """What the evaluation data is: the identified split (``DAVIS-2017 val, 1 of 30 sequences``), else the
    folder it was read from; and why the number is only a smoke number, if it is (the leaderboard's reasons)."""
    from harness.data.identify import smoke_reasons

    data = record.get("data") or {}
    dataset = data.get("dataset") if isinstance(data.get("dataset"), dict) else {}
    what = str(dataset.get("label") or "")
    if not dataset.get("split") and not data.get("sample"):
        what = f"{data.get('root')}" + (f": {what}" if what else "")
    reasons = smoke_reasons(dataset, data)
    return what + (f"; smoke: {', '.join(reasons)}" if reasons else "")
