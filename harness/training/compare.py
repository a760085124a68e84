"""Training runs side by side: each run's evaluation score against the clips it had seen, in one plot and table.

Steps are not comparable across methods (a step of one may see twice the clips of another), so the x axis
is clips seen, ``step × optim.batch_size`` from the run's own ``recipe.yaml``; training wall time (the sum of
the logged step times, evaluations left out) sits beside it in the table so that an equal clip budget and an
equal time budget can both be read off. Runs are compared only on one task, metric, protocol hash and set of
evaluation sequences: anything else is refused, naming the run that differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.io import atomic_path, atomic_write_json, atomic_write_text
from harness.training.evaluate import is_eval_entry, read_entries


@dataclass(frozen=True)
class RunCurve:
    """One training run's evaluations, by clips seen."""

    folder: Path
    method: str
    recipe: str
    batch_size: int
    steps: int
    train_wall_s: float
    points: list[dict[str, Any]]  # step, clips, score, train_wall_s (up to that step), protocol_hash, smoke

    @property
    def final(self) -> dict[str, Any]:
        return self.points[-1]


def read_run(folder: Path) -> RunCurve:
    """A ``harness train`` output folder with at least one evaluation (``--eval-every``)."""
    log, recipe_file = folder / "metrics.jsonl", folder / "recipe.yaml"
    if not log.is_file() or not recipe_file.is_file():
        raise HarnessError(f"{folder}: not a `harness train` output folder (needs metrics.jsonl and recipe.yaml)")
    recipe = yaml.safe_load(recipe_file.read_text())
    batch = int(recipe["optim"]["batch_size"])
    entries = read_entries(log)
    steps = sorted((e for e in entries if not is_eval_entry(e)), key=lambda e: e["step"])
    evals = sorted((e for e in entries if is_eval_entry(e)), key=lambda e: e["step"])
    if not evals:
        raise HarnessError(f"{folder}: no evaluation in metrics.jsonl (train with --eval-every N)")
    wall_by_step, total = {}, 0.0
    for entry in steps:
        total += float(entry["time"]["step"])
        wall_by_step[int(entry["step"])] = total
    points = [{"step": int(e["step"]), "clips": int(e["step"]) * batch, "score": e["score"], "metric": e["metric"],
               "task": e["task"], "protocol_hash": e["protocol_hash"], "sequences": list(e["data"]["sequences"]),
               "data": e["data"].get("label", ""), "smoke": bool(e["smoke"]),
               "train_wall_s": wall_by_step.get(int(e["step"]), 0.0)} for e in evals]
    method = next((e["method"] for e in evals if "method" in e), recipe.get("name", folder.name))
    return RunCurve(folder, str(method), str(recipe.get("name", "")), batch, int(steps[-1]["step"]) if steps else 0,
                    total, points)


def _check_comparable(runs: list[RunCurve]) -> None:
    first = runs[0].final
    for run in runs[1:]:
        for key in ("task", "metric", "protocol_hash", "sequences"):
            if run.final[key] != first[key]:
                raise HarnessError(f"{run.folder} was evaluated with another {key} ({run.final[key]!r}) than "
                                   f"{runs[0].folder} ({first[key]!r}): its scores cannot be compared")


def read_reference(path: Path, like: dict[str, Any]) -> dict[str, Any]:
    """A run record drawn as a level line (an untrained floor, a published checkpoint), refused unless it scored
    the same task, protocol and sequences as the training runs' last evaluations (``like``)."""
    record = json.loads(Path(path).read_text())
    got = {"task": record["task"], "protocol_hash": record["protocol"]["hash"], "sequences": list(record["data"]["sequences"])}
    for key, value in got.items():
        if value != like[key]:
            raise HarnessError(f"--reference {path}: scored with another {key} ({value!r}) than the runs ({like[key]!r})")
    from harness.leaderboard.table import (
        weights_label,  # the leaderboard's words for what the network started from
    )
    from harness.runs.schema import CheckpointBlock

    checkpoint = record.get("checkpoint")
    weights = weights_label((record.get("method_info") or {}).get("pretraining"),
                            CheckpointBlock(**checkpoint) if checkpoint else None)
    label = record["method"] + (f" · {weights}" if weights else "")
    return {"label": label, "record": str(path), "score": record["metrics"][like["metric"]]}


def compare(folders: list[Path], out_dir: Path, title: str = "", references: list[Path] = ()) -> dict[str, Path]:
    """Write ``curves.svg``, ``curves.md`` and ``curves.json`` for the runs in ``folders`` into ``out_dir``,
    with the scores of ``references`` (run records) as level lines."""
    runs = [read_run(Path(f)) for f in folders]
    _check_comparable(runs)
    levels = [read_reference(Path(r), runs[0].final) for r in references]
    out_dir.mkdir(parents=True, exist_ok=True)
    first = runs[0].final
    summary = {
        "task": first["task"], "metric": first["metric"], "protocol_hash": first["protocol_hash"],
        "data": first["data"], "sequences": first["sequences"],
        "runs": [{"folder": str(r.folder), "method": r.method, "recipe": r.recipe, "batch_size": r.batch_size,
                  "steps": r.steps, "clips": r.steps * r.batch_size, "train_wall_s": round(r.train_wall_s, 1),
                  "points": r.points} for r in runs],
        "references": levels,
    }
    paths = {"json": out_dir / "curves.json", "md": out_dir / "curves.md", "svg": out_dir / "curves.svg"}
    atomic_write_json(paths["json"], summary)
    atomic_write_text(paths["md"], _table(runs, summary))
    _plot(runs, summary, paths["svg"], title)
    return paths


def _table(runs: list[RunCurve], summary: dict[str, Any]) -> str:
    metric = summary["metric"]
    lines = [f"{metric} on {summary['task']} ({summary['data']}; protocol {summary['protocol_hash']}) by clips seen.", "",
             f"| method | recipe | clips seen | training wall (min) | {metric} % at each evaluation (clips: score) | final % |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        points = ", ".join(f"{p['clips']}: {100 * p['score']:.1f}" for p in run.points)
        lines.append(f"| {run.method} | {run.recipe} | {run.steps * run.batch_size} | {run.train_wall_s / 60:.1f} | "
                     f"{points} | {100 * run.final['score']:.1f} |")
    for level in summary["references"]:
        lines.append(f"| {level['label']} (reference) | – | 0 | – | – | {100 * level['score']:.1f} |")
    return "\n".join(lines) + "\n"


def _plot(runs: list[RunCurve], summary: dict[str, Any], out_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        ax.plot([p["clips"] for p in run.points], [100 * p["score"] for p in run.points], "o-",
                label=f"{run.method} ({run.recipe}, batch {run.batch_size}, {run.train_wall_s / 60:.0f} min training)")
    for index, level in enumerate(summary["references"]):
        ax.axhline(100 * level["score"], ls="--", lw=1, color=f"C{len(runs) + index}",
                   label=f"{level['label']}: {100 * level['score']:.1f}")
    ax.set_xlabel("training clips seen")
    ax.set_ylabel(f"{summary['metric']} (%)")
    ax.set_title(title or f"{summary['metric']} on {summary['task']}: {summary['data']}", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)


def load_summary(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
