"""Label-propagation scores while CRW trains (``harness train --eval-every N``).

Every N steps and at the end, the evaluation-only checkpoint of the current weights is written to
``<out-dir>/eval/step-<N>/crw-eval.pt`` and evaluated by the ordinary runner
(:func:`harness.runs.runner.run` with a :class:`~harness.config.RunConfig`), so the score and the
protocol hash are those ``harness run --method crw --checkpoint eval/step-<N>/crw-eval.pt`` gives on
the same data. Without ``--eval-data-root`` that is the shipped sample: a smoke number. Each entry
names its data as the leaderboard would (the identified split, else the folder) and says why its
number is a smoke number, if it is. Each evaluation appends one ``{"kind": "eval", …}``
line to ``metrics.jsonl`` and redraws ``curve.svg`` (the task's main score and the training cycle
accuracy against step) beside the checkpoints.

Only rank 0 evaluates; the other ranks wait at a barrier (the process group's timeout is long
enough, see :data:`methods.crw.train.DIST_TIMEOUT`). The global RNG state is put back after each
evaluation so that evaluating never changes the training run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
CURVE_NAME = "curve.svg"
EVAL_KIND = "eval"


@dataclass(frozen=True)
class EvalOptions:
    """What ``--eval-every`` and its companion flags ask for."""

    every: int
    task: str = "davis"
    data_root: str | None = None
    sequences: list[str] | None = None
    limit: int | None = None
    device: str = "auto"


def eval_folder(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / EVAL_DIR / f"step-{step}"


def is_eval_entry(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == EVAL_KIND


def evaluated_steps(log_path: Path) -> set[int]:
    """Steps that already have an evaluation entry in ``metrics.jsonl`` (a resumed run skips them)."""
    if not log_path.is_file():
        return set()
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return {int(e["step"]) for e in entries if is_eval_entry(e)}


def evaluate_step(
    out_dir: Path, step: int, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], options: EvalOptions
) -> dict[str, Any]:
    """Write ``eval/step-<step>/crw-eval.pt``, evaluate it with the runner, return the metrics.jsonl entry."""
    from harness.config import RunConfig
    from harness.runs.runner import run
    from methods.crw.checkpoint import save_eval_checkpoint
    from methods.crw.train import EVAL_CHECKPOINT_NAME, rng_state, set_rng_state

    out_dir = Path(out_dir).resolve()
    folder = eval_folder(out_dir, step)
    if (folder / "run").exists():  # left by an evaluation interrupted before its entry was logged
        shutil.rmtree(folder / "run")
    checkpoint = save_eval_checkpoint(folder / EVAL_CHECKPOINT_NAME, model_state, recipe, step)
    config = RunConfig(
        method="crw", task=options.task, data_root=options.data_root, sequences=options.sequences,
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
    primary = _primary_metric(record)
    entry = {
        "kind": EVAL_KIND,
        "step": step,
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


def _primary_metric(record: dict[str, Any]) -> str:
    """The tasks' headline scores (davis*, jhmdb, vip), else the first metric by name."""
    for name in ("J&F-Mean", "PCK@0.1", "mIoU"):
        if name in record["metrics"]:
            return name
    return sorted(record["metrics"])[0]


def draw_curve(log_path: Path, out_path: Path) -> Path | None:
    """``curve.svg``: the evaluation score (left axis) and the training cycle accuracy (right) against step."""
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    evals = sorted((e for e in entries if is_eval_entry(e)), key=lambda e: e["step"])
    steps = [e for e in entries if not is_eval_entry(e)]
    if not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from harness.io import atomic_path

    fig, left = plt.subplots(figsize=(7, 4.5))
    metric = evals[-1]["metric"]
    last = evals[-1]["data"]
    where = ", ".join(last["sequences"])
    # entries logged before the label existed say only whether they were smoke numbers
    what = last.get("label") or ("smoke run" if evals[-1]["smoke"] else "")
    left.plot([e["step"] for e in evals], [100 * e["score"] for e in evals], "o-", color="tab:blue",
              label=f"{metric} on {evals[-1]['task']}: {where}{f' ({what})' if what else ''}")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("training step")
    left.set_ylabel(f"{metric} (%)", color="tab:blue")
    right = left.twinx()
    if steps:
        right.plot([e["step"] for e in steps], [e["acc"] for e in steps], color="tab:orange", alpha=0.35, lw=1)
        window = max(1, len(steps) // 20)
        smooth = [sum(e["acc"] for e in steps[max(0, i - window + 1) : i + 1]) / len(steps[max(0, i - window + 1) : i + 1])
                  for i in range(len(steps))]
        right.plot([e["step"] for e in steps], smooth, color="tab:orange", label="training cycle accuracy" + (f" (mean of {window} steps)" if window > 1 else ""))
    right.set_ylabel("training cycle accuracy", color="tab:orange")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.set_title(f"CRW training: {metric} of the step checkpoints and the walk's cycle accuracy", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", fontsize=8, ncol=1, frameon=False)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out_path

