"""``harness bench adapt``: J&F of CRW without and with test-time adaptation, and what it costs.

A report, not a test. Every configuration is a full ``harness run`` (the runner, the task's
official scorer, the record) on the same real sequences with the same checkpoint, run one after
the other in this process: first without ``--adapt``, then with ``--adapt`` for each step count.
The report gives J&F / J / F per configuration, the gain over the plain run, and the adaptation
seconds per video the record measured (separately from feature extraction and propagation).

Adaptation trains through layer4 and the head, so ``--checkpoint`` must be a full training
checkpoint (the resumable state file of a ``harness train`` output folder), not the evaluation-only one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.resources import shared_dir

SHARED = shared_dir()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="crw", help="a method that adapts at test time (default crw)")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="full training checkpoint (layer4 + head): the state file in a `harness train` output folder")
    parser.add_argument("--task", default="davis2016", help="task name (default davis2016)")
    parser.add_argument("--data-root", type=Path, default=SHARED / "data" / "davis2016-val10",
                        help="benchmark data root (default: davis2016-val10 in the developers' data folder, harness.resources.shared_dir)")
    parser.add_argument("--sequences", default="car-shadow,motocross-jump",
                        help="comma-separated sequences (default: the two shortest of davis2016-val10)")
    parser.add_argument("--steps", default="5,20", help="comma-separated adaptation step counts")
    parser.add_argument("--set", dest="adapt_sets", action="append", default=[], metavar="KEY=VALUE",
                        help="other adapt.* settings for every adapted run (lr=3e-4, batch=1, ...)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=0)


def _one_run(args: argparse.Namespace, out_dir: Path, adapt: dict[str, Any] | None) -> dict[str, Any]:
    from harness.config import SECTIONS, RunConfig
    from harness.registry import get_task
    from harness.runs.runner import run

    overrides: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    if adapt is not None:
        overrides["adapt"] = dict(adapt)
    config = RunConfig(
        method=args.method, task=args.task, data_root=str(args.data_root), sequences=args.sequences.split(","),
        checkpoint=str(args.checkpoint), device=args.device, adapt=adapt is not None, overrides=overrides,
        out_dir=str(out_dir), force=True, seed=args.seed,
    )
    start = time.perf_counter()
    record = json.loads(Path(run(config)).read_text())
    wall_s = time.perf_counter() - start
    metrics = record["metrics"]
    return {
        "adapt": adapt,
        "metrics": {k: metrics[k] for k in get_task(args.task).factory.headline_metrics},
        "per_sequence": record["per_sequence"],
        "protocol_hash": record["protocol"]["hash"],
        "adapt_s_per_video": record["timing"].get("adapt_s_per_video"),
        "features_ms_per_frame": record["timing"]["features_ms_per_frame"],
        "propagation_ms_per_frame": record["timing"]["propagation_ms_per_frame"],
        "frames": record["timing"]["frames"],
        "wall_s": wall_s,
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    if not args.checkpoint.is_file():
        raise HarnessError(f"--checkpoint {args.checkpoint}: no such file")
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    from harness.config import parse_sets

    extra = parse_sets([s if s.startswith("adapt.") else f"adapt.{s}" for s in args.adapt_sets])["adapt"]
    with tempfile.TemporaryDirectory(prefix="bench-adapt-") as tmp:
        plain = _one_run(args, Path(tmp) / "plain", None)
        adapted = [_one_run(args, Path(tmp) / f"steps-{n}", {**extra, "steps": n}) for n in steps]
    import torch

    from harness.registry import get_method

    method = get_method(args.method).factory({"checkpoint": str(args.checkpoint), "device": "cpu"})
    ckpt = method.describe()
    base = plain["metrics"]["J&F-Mean"]
    return {
        "benchmark": "adapt",
        "what": "J&F without and with CRW test-time adaptation (full harness runs, same checkpoint and sequences)",
        "method": args.method,
        "checkpoint": {**ckpt["checkpoint"], "recipe": (ckpt["pretraining"]["recipe"] or {}).get("name"),
                       "step": ckpt["pretraining"]["step"]},
        "task": args.task,
        "sequences": args.sequences.split(","),
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "settings": {str(n): method.adapt_settings({**extra, "steps": n}) for n in steps},
        "plain": plain,
        "adapted": adapted,
        "summary": [
            {"steps": 0, "J&F-Mean": base, "gain": 0.0, "adapt_s_per_video": 0.0},
            *[
                {"steps": n, "J&F-Mean": run["metrics"]["J&F-Mean"], "gain": run["metrics"]["J&F-Mean"] - base,
                 "adapt_s_per_video": run["adapt_s_per_video"]}
                for n, run in zip(steps, adapted, strict=True)
            ],
        ],
    }
