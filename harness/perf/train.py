"""``harness bench train``: CRW training throughput and the cycle-accuracy curve of a real run.

Throughput: a short run of a recipe (default ``crw-cpu-demo``) in a temporary folder; the first
``--warmup`` steps (and a step that compiled the model) are dropped and the rest summarised
(median and mean) as clips/s and as the iteration split into data loading (the share of each step
spent waiting for data), forward+backward and optimizer. Beside it, in the same run, the model
step alone in float32 eager (the original code's arithmetic) and as the recipe configures it on
this device (bf16, torch.compile, channels_last on CUDA), so the ratio to the original is read off
one report. The machine's load average is recorded beside the numbers because on a shared CPU it
moves them more than anything else.

``--loader-only``: the data pipeline alone, one worker (one thread): the per-patch reference path,
the batched one (``data.augment_on: cpu``) and the worker's part of ``data.augment_on: gpu``
(decode and box draws), side by side on one real video (default the Kinetics clip) at the
recipe's settings (default ``crw-paper``); CPU-ms per clip split into decode and augment, clips per
CPU-second and per wall-second, speedups against the reference and the load average.

Learning curve: read from the JSONL log of a finished run (``--log``, default the committed demo
run): cycle accuracy and loss at the start and the end (means over ``--window`` steps), and a
smoothed curve of about 20 points.
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

from harness.resources import results_dir, shared_dir

REPO = Path.cwd()
DEFAULT_DATA = shared_dir() / "data" / "videos"
DEFAULT_LOG = results_dir() / "train" / "crw-cpu-demo" / "metrics.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="crw", help="trainable method (default crw)")
    parser.add_argument("--recipe", help="recipe to time (default crw-cpu-demo; with --loader-only crw-paper)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training videos (default: videos/ in the developers' data folder, harness.resources.shared_dir)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps after the warm-up (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help="metrics.jsonl of a finished run to summarise")
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


def summarise_curve(records: list[dict[str, Any]], window: int) -> dict[str, Any]:
    """Start/end cycle accuracy and loss (means over ``window`` steps) and a ~20-point smoothed curve."""
    window = max(1, min(window, len(records) // 2 or 1))
    head, tail = records[:window], records[-window:]
    walks = sorted(records[0]["walk_acc"])
    stride = max(1, len(records) // 20)
    curve = []
    for end in range(stride, len(records) + 1, stride):
        chunk = records[max(0, end - window) : end]
        curve.append({"step": chunk[-1]["step"], "acc": _mean([r["acc"] for r in chunk]),
                      "loss": _mean([r["loss"] for r in chunk])})
    start_acc, end_acc = _mean([r["acc"] for r in head]), _mean([r["acc"] for r in tail])
    return {
        "steps": records[-1]["step"],
        "clips_seen": round(sum(r["clips_per_s"] * r["time"]["step"] for r in records)),
        "wall_minutes": sum(r["time"]["step"] for r in records) / 60,
        "window": window,
        "acc_start": start_acc,
        "acc_end": end_acc,
        "acc_gain": end_acc - start_acc,
        "acc_first_step": records[0]["acc"],
        "acc_max_step": max(records, key=lambda r: r["acc"])["step"],
        "loss_start": _mean([r["loss"] for r in head]),
        "loss_end": _mean([r["loss"] for r in tail]),
        "walk_acc_start": {k: _mean([r["walk_acc"][k] for r in head]) for k in walks},
        "walk_acc_end": {k: _mean([r["walk_acc"][k] for r in tail]) for k in walks},
        "step_s_median": {p: statistics.median(r["time"][p] for r in records) for p in ("data", "fwd_bwd", "optim", "step")},
        "clips_per_s_median": statistics.median(r["clips_per_s"] for r in records),
        "curve": curve,
    }


def time_training(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps and split the timed ones into data / forward+backward / optimizer."""
    import torch

    from harness.registry import get_trainer

    trainer = get_trainer(args.method).load()
    recipe = trainer.load_recipe(args.recipe or "crw-cpu-demo", args.sets)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="crw-bench-") as tmp:
        started = time.perf_counter()
        options = trainer.TrainOptions(data=[args.data], out_dir=Path(tmp), max_steps=args.warmup + args.steps,
                                       device=args.device, progress=False)
        trainer.train(recipe, options)
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
        "frame_size": recipe["augment"]["frame_size"],
        "patch_size": recipe["augment"]["patch_size"],
        "clip_len": recipe["data"]["clip_len"],
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


def main(args: argparse.Namespace) -> dict[str, Any]:
    import platform

    import torch

    from harness.registry import get_trainer

    report: dict[str, Any] = {
        "benchmark": "train",
        "env": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
                "device": args.device},
    }
    if args.loader_only:
        if not args.video.is_file():
            from harness.errors import HarnessError

            raise HarnessError(f"--video {args.video}: no such file (the default is a real Kinetics clip in the developers' data folder; pass --video FILE)")
        trainer = get_trainer(args.method).load()
        recipe = trainer.load_recipe(args.recipe or "crw-paper", args.sets)
        report["benchmark"] = "train --loader-only"
        report["loader"] = trainer.benchmark_loader(recipe, args.video, args.clips, args.rounds)
        return report
    if not args.skip_timing:
        report["throughput"] = time_training(args)
        if not args.skip_model_step:
            trainer = get_trainer(args.method).load()
            recipe = trainer.load_recipe(args.recipe or "crw-cpu-demo", args.sets)
            report["model_step"] = trainer.benchmark_model_step(recipe, args.device, args.warmup, args.steps)
    if args.log.is_file():
        report["run_log"] = str(args.log.resolve().relative_to(REPO) if args.log.resolve().is_relative_to(REPO) else args.log)
        curve = summarise_curve(read_log(args.log), args.window)
        recipe_file = args.log.parent / "recipe.yaml"  # written by `harness train` beside the log
        if recipe_file.is_file():
            import yaml

            curve["chance_acc"] = get_trainer(args.method).load().chance_accuracy(yaml.safe_load(recipe_file.read_text()))
        report["learning_curve"] = curve
    else:
        report["learning_curve"] = None
        report["note"] = f"no training log at {args.log}: run `harness train` first or pass --log"
    return report
