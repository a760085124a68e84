"""``harness bench propagation``: the engine against dense propagation at DAVIS 480p size, on one device.

Each measurement runs in its own subprocess (``python -m harness.perf.propagation --worker ...``) so
that its peak RSS is its own: the engine on the full video (T frames), the engine on a shorter video
(to show that memory does not grow with length beyond the features), and the dense reference on the
first few target frames of the same video (it is slow; its cost per frame does not depend on t, since
CRW's padded context always holds n+1 frames). All workers build the same seeded features. Outputs of
the engine and the reference are compared on the frames both computed.

``--device cuda`` runs every worker on the GPU (clocks read after ``torch.cuda.synchronize``, memory as
``max_memory_allocated``); ``--path`` picks the engine's neighbour search (default: the device's own,
``batched`` on CUDA, ``tiled`` on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from harness.engine.propagation import PATHS, frame_neighbours, propagate, search_path
from harness.engine.protocol import resolve_protocol
from harness.perf.dense_reference import dense_topk, propagate_dense, topk_disagreement
from harness.runs.record import cpu_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=50, help="video length T for the engine")
    parser.add_argument("--short-frames", type=int, default=25, help="second, shorter video for the memory check")
    parser.add_argument("--reference-frames", type=int, default=2, help="target frames the dense reference computes")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--height", type=int, default=60)
    parser.add_argument("--width", type=int, default=107)
    parser.add_argument("--labels", type=int, default=3, help="K, label channels")
    parser.add_argument("--protocol", default="crw")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--memory-mib", type=float, default=None,
                        help="engine working-memory budget (default: the engine's own for the device)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where every worker runs (auto: CUDA when present)")
    parser.add_argument("--path", choices=["auto", *PATHS], default="auto",
                        help="engine neighbour search (auto: batched on CUDA, tiled on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["engine", "dense"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)


def smooth_features(args: argparse.Namespace, frames: int) -> torch.Tensor:
    """Seeded unit features that vary smoothly in space and time, built frame by frame in reused buffers.

    Building them without per-frame temporaries keeps allocator leftovers out of the peak RSS that
    both workers are compared on.
    """
    gen = torch.Generator().manual_seed(args.seed)
    shape = (args.channels, args.height, args.width)
    feats = torch.empty(frames, *shape, dtype=getattr(torch, args.dtype))
    state, noise = torch.randn(shape, generator=gen), torch.empty(shape)
    for t in range(frames):
        torch.randn(shape, generator=gen, out=noise)
        state.mul_(0.9).add_(noise, alpha=0.45)
        feats[t] = torch.nn.functional.avg_pool2d(state[None], 5, stride=1, padding=2, count_include_pad=False)[0]
        feats[t].div_(feats[t].norm(dim=0, keepdim=True))
    return feats


def first_labels(args: argparse.Namespace) -> torch.Tensor:
    gen = torch.Generator().manual_seed(args.seed + 1)
    return torch.rand(args.labels, args.height, args.width, generator=gen).to(getattr(torch, args.dtype))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("harness bench propagation: --device cuda, but no CUDA device is available")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement; prints its JSON report and saves what the parent compares."""
    runtime = _peak_rss_mib()  # interpreter + torch, the same in every worker
    device = _device(args.device)
    protocol = resolve_protocol(args.protocol, task="davis")
    feats, first = smooth_features(args, args.frames).to(device), first_labels(args).to(device)
    path = None if args.path == "auto" else args.path
    if device.type == "cuda":  # context creation, cuBLAS handles and kernel loading stay out of the clock
        propagate(feats[:3], first, protocol, memory_mib=args.memory_mib, path=path)
        propagate_dense(feats[:3], first, protocol, frames=1)
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _peak_rss_mib()
    gpu_baseline = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
    wall, cpu = time.perf_counter(), time.process_time()
    if args.worker == "engine":
        labels = propagate(feats, first, protocol, memory_mib=args.memory_mib, path=path)
        targets = args.frames - 1
    else:
        labels = propagate_dense(feats, first, protocol, frames=args.reference_frames)
        targets = min(args.reference_frames, args.frames - 1)
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = {
        "frames": args.frames,
        "target_frames": targets,
        "wall_s": wall,
        "cpu_s": cpu,
        "ms_per_frame": 1000 * wall / targets,
        "cpu_ms_per_frame": 1000 * cpu / targets,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_runtime_mib": runtime,
        "rss_before_propagation_mib": baseline,
        "features_mib": feats.numel() * feats.element_size() / 2**20,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "path": search_path(device, path) if args.worker == "engine" else "dense",
        # on CUDA: the most memory allocated during propagation above the features and labels already there
        "load_average_after": os.getloadavg(),
        "peak_gpu_mib_above_inputs": (torch.cuda.max_memory_allocated(device) / 2**20 - gpu_baseline
                                      if device.type == "cuda" else None),
    }
    if args.save is not None:  # after the measurement: comparison data for the frames both sides compute
        last = min(args.reference_frames, args.frames - 1)
        if args.worker == "engine":
            neighbours = [frame_neighbours(feats, t, protocol, args.memory_mib, path) for t in range(1, last + 1)]
        else:
            neighbours = [dense_topk(feats, t, protocol) for t in range(1, last + 1)]
        neighbours = [(s.cpu(), i.cpu()) for s, i in neighbours]
        torch.save({"labels": labels[: last + 1].cpu(), "neighbours": neighbours}, args.save)
    return report


def _run_worker(args: argparse.Namespace, kind: str, frames: int, save: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "harness.perf.propagation", "--worker", kind, "--frames", str(frames)]
    for flag in ("reference_frames", "channels", "height", "width", "labels", "protocol", "dtype", "memory_mib", "seed",
                 "device", "path"):
        if getattr(args, flag) is not None:
            cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if save is not None:
        cmd += ["--save", str(save)]
    print(f"[bench propagation] {kind} worker, T={frames}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    return json.loads(done.stdout.strip().splitlines()[-1])


#: the files whose speed this benchmark measures
MEASURED_CODE = ("harness/engine", "harness/perf/propagation.py", "harness/perf/dense_reference.py")


def _measured_code() -> tuple[str | None, bool | None]:
    """The commit, and whether the measured files differ from it (None, None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *MEASURED_CODE],
                                cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def _above(report: dict[str, Any], baseline: str) -> float:
    return max(report["peak_rss_mib"] - report[baseline], 1.0)


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.worker is not None:
        return _worker(args)
    protocol = resolve_protocol(args.protocol, task="davis")
    git = _measured_code()
    load_before = os.getloadavg()  # a busy machine slows the workers unevenly: read ratios with this
    with tempfile.TemporaryDirectory() as tmp:
        engine_out, dense_out = Path(tmp) / "engine.pt", Path(tmp) / "dense.pt"
        engine = _run_worker(args, "engine", args.frames, engine_out)
        short = _run_worker(args, "engine", args.short_frames, None)
        dense = _run_worker(args, "dense", args.frames, dense_out)
        mine, theirs = torch.load(engine_out, weights_only=True), torch.load(dense_out, weights_only=True)
    compared = len(mine["neighbours"])
    disagreement = [topk_disagreement(*a, *b) for a, b in zip(mine["neighbours"], theirs["neighbours"], strict=True)]
    # frames after the context is full cost the engine most (all n frames distinct); estimate them
    # from the difference of the two engine runs when the short run is already past the context
    steady, steady_plausible = None, True
    if args.short_frames - 1 > protocol.context and args.frames > args.short_frames:
        steady = 1000 * (engine["wall_s"] - short["wall_s"]) / (args.frames - args.short_frames)
        steady_cpu = 1000 * (engine["cpu_s"] - short["cpu_s"]) / (args.frames - args.short_frames)
        # early CRW frames see fewer distinct frames, so a steady frame costs at least the long video's
        # average; an estimate below it means the load changed between the two workers: not a measurement
        if steady < engine["ms_per_frame"] or steady_cpu < engine["cpu_ms_per_frame"]:
            steady_plausible = False
    return {
        "benchmark": "propagation",
        "shape": {"T": args.frames, "C": args.channels, "h": args.height, "w": args.width, "K": args.labels},
        "dtype": args.dtype,
        "device": engine["device"],
        "engine_path": engine["path"],
        "torch_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        # the code measured: a report for results/ comes from a commit with these files unchanged
        "git_commit": git[0],
        "measured_code": list(MEASURED_CODE),
        "measured_code_dirty": git[1],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "protocol": protocol.record(),
        "memory_mib_budget": args.memory_mib,
        "engine": engine,
        "engine_short_video": short,
        "dense_reference": dense,
        "engine_steady_ms_per_frame": steady,
        "steady_estimate_plausible": steady_plausible if steady is not None else None,
        "engine_steady_cpu_ms_per_frame": steady_cpu if steady is not None else None,
        "speedup_wall": dense["ms_per_frame"] / engine["ms_per_frame"],
        "speedup_cpu": dense["cpu_ms_per_frame"] / engine["cpu_ms_per_frame"],
        "speedup_wall_steady": dense["ms_per_frame"] / steady if steady else None,
        "speedup_cpu_steady": dense["cpu_ms_per_frame"] / steady_cpu if steady else None,
        "memory_ratio": dense["peak_rss_mib"] / engine["peak_rss_mib"],
        # without the interpreter + torch (~0.5 GiB, identical in both): features + working memory
        "memory_ratio_above_runtime": _above(dense, "rss_runtime_mib") / _above(engine, "rss_runtime_mib"),
        # what propagation itself adds on top of the features
        "working_memory_mib": {
            "engine": _above(engine, "rss_before_propagation_mib"),
            "dense_reference": _above(dense, "rss_before_propagation_mib"),
        },
        "working_memory_ratio": _above(dense, "rss_before_propagation_mib") / _above(engine, "rss_before_propagation_mib"),
        "memory_growth_mib": {
            "peak_rss_long_minus_short": engine["peak_rss_mib"] - short["peak_rss_mib"],
            "features_long_minus_short": engine["features_mib"] - short["features_mib"],
        },
        "compared_frames": compared,
        "labels_max_abs_diff": float((mine["labels"] - theirs["labels"]).abs().max()),
        "topk_set_disagreement": sum(disagreement) / max(compared, 1),
        "topk_set_disagreement_per_frame": disagreement,
        "targets": {"speedup": 5.0, "speedup_steady": 10.0, "memory_ratio": 5.0, "cuda_steady_ms_per_frame": 3.0},
        # the memory target is read on peak RSS above the bare interpreter + torch import (features
        # included), like CUDA's max_memory_allocated leaves out the driver and libraries; the total
        # process ratio is reported next to it
        "targets_met": {
            "speedup_wall": dense["ms_per_frame"] / engine["ms_per_frame"] >= 5.0,
            "speedup_wall_steady": (dense["ms_per_frame"] / steady >= 10.0) if steady and steady_plausible else None,
            "memory_ratio_above_runtime": _above(dense, "rss_runtime_mib") / _above(engine, "rss_runtime_mib") >= 5.0,
            "memory_ratio_total_rss": dense["peak_rss_mib"] / engine["peak_rss_mib"] >= 5.0,
        },
    }


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(_parser)
    print(json.dumps(main(_parser.parse_args())))
