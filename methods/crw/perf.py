"""The data-pipeline measurement behind ``harness bench train --loader-only``: CRW's clips against their reference.

The paths are measured side by side in one process so that a ratio is read off one report even on
a shared machine: the benchmark rotates its paths round by round and counts CPU seconds of this
process as well as wall seconds (CPU time is what "per worker" means when other programs compete
for the cores). The model step is timed by the harness (:mod:`harness.training.benchmark`).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from methods.crw.augment import ClipAugment
from methods.crw.data import (
    ClipDataset,
    ClipIndex,
    ShardedClipSampler,
    VideoEntry,
    collate,
    decode_frames,
    index_videos,
)
from methods.crw.reference import PerPatchAugment, decode_file_reference


class _TimedDecode:
    """A decoder wrapper that adds up the CPU time spent decoding (the rest of a sample is augmentation)."""

    def __init__(self, decode: Callable[[VideoEntry, Sequence[int]], np.ndarray]) -> None:
        self.decode = decode
        self.cpu_s = 0.0

    def __call__(self, video: VideoEntry, frames: Sequence[int]) -> np.ndarray:
        started = time.process_time()
        try:
            return self.decode(video, frames)
        finally:
            self.cpu_s += time.process_time() - started


def benchmark_loader(recipe: dict[str, Any], video: Path, clips: int = 8, rounds: int = 3) -> dict[str, Any]:
    """Clips per second of one worker (one thread) on ``video``: the per-patch reference, the batched
    path (``augment_on: cpu``) and the worker's part of ``augment_on: gpu`` (decode + box draws).

    Each round decodes, augments and collates the same ``clips`` clips (the sampler's first keys at
    the recipe's settings) with every path, the order rotating between rounds. CPU time is split
    into decoding (timed around the decoder) and the rest (augmentation and collation).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one DataLoader worker = one core
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="crw-loader-bench-") as tmp:
            root = Path(tmp) / "videos"
            root.mkdir()
            (root / video.name).symlink_to(video.resolve())
            videos, _ = index_videos(root, Path(tmp) / "cache")
            index = ClipIndex(videos, int(recipe["data"]["clip_len"]), recipe["data"]["fps"])
            sampler = ShardedClipSampler(index, int(recipe["data"]["clips_per_video"]), 1, int(recipe["seed"]))
            keys = []
            epoch = 0
            while len(keys) < clips:
                keys.extend(k for batch in sampler.epoch_batches(epoch) for k in batch)
                epoch += 1
            keys = keys[:clips]
            decoders = {
                "reference": _TimedDecode(decode_file_reference),
                "batched": _TimedDecode(decode_frames),
                "worker_part_of_augment_on_gpu": _TimedDecode(decode_frames),
            }
            fast = ClipAugment(recipe["augment"])
            paths = {
                "reference": ClipDataset(index, PerPatchAugment(recipe["augment"]), decode=decoders["reference"]),
                "batched": ClipDataset(index, fast, decode=decoders["batched"]),
                "worker_part_of_augment_on_gpu": ClipDataset(index, fast.prepare, decode=decoders["worker_part_of_augment_on_gpu"]),
            }
            first = {name: ds[keys[0]][0] for name, ds in paths.items()}  # warm-up, and a check they agree
            max_abs = (first["batched"] - first["reference"]).abs().max().item()
            assert torch.equal(fast.finish(*first["worker_part_of_augment_on_gpu"]), first["batched"])
            timings: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
            for round_ in range(rounds):
                order = list(paths)[round_ % len(paths) :] + list(paths)[: round_ % len(paths)]  # rotate
                for name in order:
                    decoders[name].cpu_s = 0.0
                    wall, cpu = time.perf_counter(), time.process_time()
                    collate([paths[name][k] for k in keys])
                    cpu = time.process_time() - cpu
                    timings[name].append({"wall_s": time.perf_counter() - wall, "cpu_s": cpu, "decode_cpu_s": decoders[name].cpu_s})
    finally:
        torch.set_num_threads(threads)
    load_after = os.getloadavg()

    def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
        return {
            "clips_per_s_wall": statistics.median(clips / r["wall_s"] for r in rows),
            "clips_per_cpu_s": statistics.median(clips / r["cpu_s"] for r in rows),
            "decode_cpu_ms_per_clip": statistics.median(1000 * r["decode_cpu_s"] / clips for r in rows),
            "augment_cpu_ms_per_clip": statistics.median(1000 * (r["cpu_s"] - r["decode_cpu_s"]) / clips for r in rows),
            "rounds": rows,
        }

    result = {name: summary(rows) for name, rows in timings.items()}
    reference = result["reference"]["clips_per_cpu_s"]
    side_by_side = {
        name: {
            "decode_cpu_ms_per_clip": r["decode_cpu_ms_per_clip"],
            "augment_cpu_ms_per_clip": r["augment_cpu_ms_per_clip"],
            "cpu_ms_per_clip": 1000 / r["clips_per_cpu_s"],
            "clips_per_cpu_s": r["clips_per_cpu_s"],
            "speedup_per_cpu_s": r["clips_per_cpu_s"] / reference,
            "meets_3x": r["clips_per_cpu_s"] / reference >= 3.0,
            # paired: the reference's CPU time over this path's in the same round (less exposed to load drift)
            "speedup_per_cpu_s_by_round": [ref["cpu_s"] / own["cpu_s"] for ref, own in zip(timings["reference"], rows, strict=True)],
        }
        for (name, r), rows in zip(result.items(), timings.values(), strict=True)
    }
    return {
        "what": "one worker's data pipeline (decode + augment + collate), torch on 1 thread, all paths in one process",
        "video": str(video),
        "settings": {"clip_len": recipe["data"]["clip_len"], "fps": recipe["data"]["fps"], **recipe["augment"]},
        "recipe": recipe.get("name"),
        "clips_per_round": clips,
        "rounds": rounds,
        "paths": {
            "reference": "methods/crw/reference.py: every candidate frame converted to RGB, one interpolate per patch",
            "batched": "data.augment_on: cpu (methods/crw/data.py + augment.py): only the kept frames converted, boxes "
            "drawn in bulk, one antialiased resize per frame, one grid_sample per clip",
            "worker_part_of_augment_on_gpu": "data.augment_on: gpu: the worker only decodes and draws the boxes; frames "
            "are resized and patches cut on the GPU for the whole batch (not timed here)",
        },
        "target": ">= 3x the reference's clips per CPU-second (one worker)",
        "side_by_side": side_by_side,
        "reference": result["reference"],
        "batched": result["batched"],
        "worker_part_of_augment_on_gpu": result["worker_part_of_augment_on_gpu"],
        "speedup_per_cpu_s_worker_part_of_augment_on_gpu": side_by_side["worker_part_of_augment_on_gpu"]["speedup_per_cpu_s"],
        "speedup_per_cpu_s": side_by_side["batched"]["speedup_per_cpu_s"],
        "speedup_wall": result["batched"]["clips_per_s_wall"] / result["reference"]["clips_per_s_wall"],
        "max_abs_difference_normalised": max_abs,
        "load_average_1m_before_after": [load_before[0], load_after[0]],
        "cpu_count": os.cpu_count(),
    }
