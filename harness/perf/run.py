"""``harness bench run``: one whole ``harness run`` in its own process, reported stage by stage.

The run's record already holds honest per-stage timings (:mod:`harness.runs.timing`); this benchmark
starts the run fresh (its own process, a throw-away output folder, so nothing resumes), reads the
record back, and adds what a reader wants from it: the share of each stage, the time per frame that
is not model loading, and that time projected onto a full benchmark (DAVIS-2017 val: 1,999 frames).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: frames of DAVIS-2017 val (30 sequences), the default projection
DAVIS_2017_VAL_FRAMES = 1999


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="crw")
    parser.add_argument("--task", default="davis")
    parser.add_argument("--data-root", default=None, help="default: the task's usual fallback (the shipped sample)")
    parser.add_argument("--sequences", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--protocol", default="crw")
    parser.add_argument("--project-frames", type=int, default=DAVIS_2017_VAL_FRAMES,
                        help="frames of the full benchmark the per-frame time is projected onto (default: DAVIS-2017 val)")


def _command(args: argparse.Namespace, out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "harness", "run", "--method", args.method, "--task", args.task,
           "--device", args.device, "--precision", args.precision, "--protocol", args.protocol, "--out-dir", str(out_dir)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    if args.sequences:
        cmd += ["--sequences", args.sequences]
    return cmd


def summarise(record: dict[str, Any], project_frames: int) -> dict[str, Any]:
    """Stage shares and the projection from a run record's ``timing`` block."""
    timing = record["timing"]
    stages, frames = timing["stages"], timing["frames"]
    staged = sum(stages.values())
    per_frame_s = (timing["wall_s"] - (timing.get("model_load_s") or 0.0)) / frames
    return {
        "frames": frames,
        "stages_ms_per_frame": stages,
        "stage_share": {k: v / staged for k, v in stages.items()} if staged else None,
        "read_wait_ms_per_frame": timing.get("read_wait_ms_per_frame"),
        "wall_s": timing["wall_s"],
        "model_load_s": timing.get("model_load_s"),
        "wall_minus_model_load_ms_per_frame": 1000 * per_frame_s,
        "projected_frames": project_frames,
        "projected_s": per_frame_s * project_frames,
        "peak_rss_mib": timing.get("peak_rss_mib"),
        "peak_gpu_mib": timing.get("peak_gpu_mib"),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        out_dir = Path(tmp) / "run"
        cmd = _command(args, out_dir)
        print(f"[bench run] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        record = json.loads((out_dir / "record.json").read_text())
    return {
        "benchmark": "run",
        "command": ["harness", *cmd[3:-2]],  # without the interpreter and the throw-away folder
        "method": record["method"],
        "task": record["task"],
        "sequences": record["data"]["sequences"],
        "precision": record["config"].get("precision"),
        "protocol_hash": record["protocol"]["hash"],
        "metrics": record["metrics"],
        "env": {k: record["env"].get(k) for k in ("device", "device_name", "cpu_model", "threads", "torch", "git_commit",
                                                   "git_dirty")},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        **summarise(record, args.project_frames),
    }
