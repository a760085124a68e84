"""``harness bench train``: a trainer's training throughput and the learning curve of a real run.

Throughput: a short run of a recipe (default the trainer's ``demo_recipe``) in a temporary folder; the first
``--warmup`` steps (and a step that compiled the model) are dropped and the rest summarised
(median and mean) as clips/s and as the iteration split into data loading (the share of each step
spent waiting for data), forward+backward and optimizer. Beside it, in the same run, the model
step alone in float32 eager (the original code's arithmetic) and as the recipe configures it on
this device (bf16, torch.compile, channels_last on CUDA), so the ratio to the original is read off
one report. The machine's load average is recorded beside the numbers because on a shared CPU it
moves them more than anything else.

``--loader-only``: the trainer's data pipeline alone (its ``benchmark_loader`` hook), on one real
video (default the Kinetics clip) at the recipe's settings (default the trainer's ``paper_recipe``).

Learning curve: read from the JSONL log of a finished run (``--log``, default the committed run of the
demo recipe, ``results/train/<demo_recipe>/metrics.jsonl``): the loss and every diagnostic at the start
and the end (means over ``--window`` steps), the trainer's ``curve_metric`` as a smoothed curve of
about 20 points, and what guessing would score (the trainer's ``chance``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.resources import results_dir, shared_dir

REPO = Path.cwd()
DEFAULT_DATA = shared_dir() / "data" / "videos"
#: keys of a log line that are not diagnostics
STEP_KEYS = ("step", "epoch", "loss", "lr", "clips_per_s", "time", "decode_failures", "compile_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="crw", help="trainable method (default crw)")
    parser.add_argument("--recipe", help="recipe to time (default the trainer's demo recipe; with --loader-only its paper recipe)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training videos (default: videos/ in the developers' data folder, harness.resources.shared_dir)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps after the warm-up (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    parser.add_argument("--log", type=Path, help="metrics.jsonl of a finished run to summarise "
                        "(default RESULTS/train/<demo recipe>/metrics.jsonl)")
    parser.add_argument("--window", type=int, default=10, help="steps averaged for start/end accuracy (default 10)")
    parser.add_argument("--skip-timing", action="store_true", help="only summarise --log")
    parser.add_argument("--skip-model-step", action="store_true", help="leave out the model-step comparison")
    parser.add_argument("--loader-only", action="store_true",
                        help="time only the data pipeline: per-patch reference, batched path, worker part of augment_on gpu; one worker")
    parser.add_argument("--video", type=Path, default=DEFAULT_DATA / "kinetics400-demo.mp4",
                        help="--loader-only: the video (default: a real Kinetics clip in the developers' data folder)")
    parser.add_argument("--clips", type=int, default=8, help="--loader-only: clips per round (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="--loader-only: rounds per path (default 3)")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The training steps of a metrics.jsonl (evaluation entries, ``"kind": "eval"``, left out)."""
    with open(path) as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    return [e for e in entries if e.get("kind") != "eval"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarise_curve(records: list[dict[str, Any]], window: int, metric: str) -> dict[str, Any]:
    """The loss and every diagnostic at the start and the end (means over ``window`` steps; dict diagnostics
    key by key), ``metric``'s gain, first value and best step, and a ~20-point smoothed curve of ``metric``."""
    window = max(1, min(window, len(records) // 2 or 1))
    head, tail = records[:window], records[-window:]
    stride = max(1, len(records) // 20)
    curve = []
    for end in range(stride, len(records) + 1, stride):
        chunk = records[max(0, end - window) : end]
        curve.append({"step": chunk[-1]["step"], metric: _mean([r[metric] for r in chunk]),
                      "loss": _mean([r["loss"] for r in chunk])})
    start, end = _mean([r[metric] for r in head]), _mean([r[metric] for r in tail])
    summary: dict[str, Any] = {
        "steps": records[-1]["step"],
        "clips_seen": round(sum(r["clips_per_s"] * r["time"]["step"] for r in records)),
        "wall_minutes": sum(r["time"]["step"] for r in records) / 60,
        "window": window,
        "metric": metric,
        f"{metric}_gain": end - start,
        f"{metric}_first_step": records[0][metric],
        f"{metric}_max_step": max(records, key=lambda r: r[metric])["step"],
    }
    for key in ["loss", *(k for k in records[0] if k not in STEP_KEYS)]:
        for name, rows in (("start", head), ("end", tail)):
            value = records[0][key]
            summary[f"{key}_{name}"] = ({sub: _mean([r[key][sub] for r in rows]) for sub in value}
                                        if isinstance(value, dict) else _mean([r[key] for r in rows]))
    summary.update({
        "step_s_median": {p: statistics.median(r["time"][p] for r in records) for p in ("data", "fwd_bwd", "optim", "step")},
        "clips_per_s_median": statistics.median(r["clips_per_s"] for r in records),
        "curve": curve,
    })
    return summary


def _trainer_and_recipe(args: argparse.Namespace, default: str | None, what: str) -> tuple[Any, dict[str, Any]]:
    from harness.registry import get_trainer
    from harness.training.recipes import load_recipe

    trainer = get_trainer(args.method).load()
    name = args.recipe or default
    if name is None:
        raise HarnessError(f"method {args.method!r} declares no {what} recipe: pass --recipe")
    return trainer, load_recipe(trainer, name, args.sets)


def time_training(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps and split the timed ones into data / forward+backward / optimizer."""
    import torch

    from harness.training.loop import train
    from harness.training.options import TrainOptions

    trainer, recipe = _trainer_and_recipe(args, trainer_default(args, "demo_recipe"), "demo")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        started = time.perf_counter()
        options = TrainOptions(data=[args.data], out_dir=Path(tmp), max_steps=args.warmup + args.steps,
                               device=args.device, progress=False)
        train(trainer, recipe, options)
        total = time.perf_counter() - started
        records = [r for r in read_log(Path(tmp) / "metrics.jsonl")[args.warmup :] if "compile_s" not in r]
    if not records:
        raise RuntimeError("no timed steps: the run ended during the warm-up")
    parts = ("data", "fwd_bwd", "optim", "step")
    median = {p: statistics.median(r["time"][p] for r in records) for p in parts}
    mean = {p: _mean([r["time"][p] for r in records]) for p in parts}
    batch = int(recipe["optim"]["batch_size"])
    return {
        "recipe": recipe.get("name"),
        "overrides": args.sets,
        "batch_size": batch,
        "settings": {k: v for k, v in recipe.items() if isinstance(v, dict)},
        "timed_steps": len(records),
        "warmup_steps": args.warmup,
        "clips_per_s_median": batch / median["step"],
        "clips_per_s_mean": batch / mean["step"],
        "step_s_median": median,
        "step_s_mean": mean,
        "share_of_step": {p: mean[p] / mean["step"] for p in ("data", "fwd_bwd", "optim")},
        "data_wait_share": mean["data"] / mean["step"],
        "wall_s_total": total,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_before_after": [load_before[0], os.getloadavg()[0]],
    }


def trainer_default(args: argparse.Namespace, attribute: str) -> str | None:
    """The trainer's declared default recipe (``demo_recipe`` or ``paper_recipe``), without building the trainer."""
    from harness.registry import get_trainer

    return getattr(get_trainer(args.method).load(), attribute)


def main(args: argparse.Namespace) -> dict[str, Any]:
    import platform

    import torch

    report: dict[str, Any] = {
        "benchmark": "train",
        "env": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
                "device": args.device},
    }
    if args.loader_only:
        if not args.video.is_file():
            raise HarnessError(f"--video {args.video}: no such file (the default is a real Kinetics clip in the developers' data folder; pass --video FILE)")
        trainer, recipe = _trainer_and_recipe(args, trainer_default(args, "paper_recipe"), "paper")
        report["benchmark"] = "train --loader-only"
        report["loader"] = trainer.benchmark_loader(recipe, args.video, args.clips, args.rounds)
        return report
    if not args.skip_timing:
        report["throughput"] = time_training(args)
        if not args.skip_model_step:
            from harness.training.benchmark import benchmark_model_step

            trainer, recipe = _trainer_and_recipe(args, trainer_default(args, "demo_recipe"), "demo")
            report["model_step"] = benchmark_model_step(trainer, recipe, args.device, args.warmup, args.steps)
    log_path = args.log
    if log_path is None:
        demo = trainer_default(args, "demo_recipe")
        log_path = results_dir() / "train" / demo / "metrics.jsonl" if demo else None
    if log_path is not None and log_path.is_file():
        from harness.registry import get_trainer

        trainer = get_trainer(args.method).load()
        report["run_log"] = str(log_path.resolve().relative_to(REPO) if log_path.resolve().is_relative_to(REPO) else log_path)
        curve = summarise_curve(read_log(log_path), args.window, trainer.curve_metric)
        recipe_file = log_path.parent / "recipe.yaml"  # written by `harness train` beside the log
        if recipe_file.is_file():
            import yaml

            curve[f"chance_{trainer.curve_metric}"] = trainer.chance(yaml.safe_load(recipe_file.read_text()))
        report["learning_curve"] = curve
    else:
        report["learning_curve"] = None
        report["note"] = f"no training log at {log_path}: run `harness train` first or pass --log"
    return report
