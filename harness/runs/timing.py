"""Honest stage timings of a run: what each per-frame stage costs, the wall time, the model load.

A GPU runs asynchronously, so a clock read without a ``synchronize`` charges one stage's kernels to the
next; :class:`StageTimer` synchronises the device on both sides of every stage. cuDNN autotunes its
convolution algorithms on the first batches of each input shape (``cudnn.benchmark``), which would put
seconds of search into the first sequence's feature time; :class:`WarmUp` runs one batch of each new
frame shape outside the timings. The wall time counts from the start of the process (interpreter and
imports included), so ``wall_s`` - ``model_load_s`` over the frames is what a whole evaluation costs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness.device import sync
from harness.runs.schema import STAGES

#: per-sequence timing key of each stage (seconds); ``score`` kept the name version 1's state files used
STAGE_KEYS = {stage: ("scoring_s" if stage == "score" else f"{stage}_s") for stage in STAGES}
_IMPORTED = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (Linux: from ``/proc``; elsewhere: since this module was imported).

    Both ``/proc/uptime`` and the process start time in ``/proc/self/stat`` count from boot, so their
    difference is the process age at clock-tick resolution.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22 (starttime), after "pid (comm)"
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


synchronize = sync  # the device module owns waiting for a device


class StageTimer:
    """Seconds spent per stage, summed over calls; the device is synchronised around each stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def state(self) -> dict[str, float]:
        """The per-sequence timing entries (``<stage>_s``) of the stages measured."""
        return {STAGE_KEYS.get(name, f"{name}_s"): value for name, value in self.seconds.items()}


class WarmUp:
    """Runs one batch of every new frame shape through a method before it is timed (CUDA only).

    On CPU there is nothing to warm up, and the extra batch would only cost time.
    """

    def __init__(self, device: torch.device, enabled: bool | None = None) -> None:
        self.device = device
        self.enabled = device.type == "cuda" if enabled is None else enabled
        self.seen: set[tuple[int, ...]] = set()

    def __call__(self, method: Any, frames: Any) -> bool:
        """Warm ``method`` up on the first batch of ``frames`` [T, H, W, 3] if their shape is new."""
        shape = tuple(frames.shape[1:])
        if not self.enabled or shape in self.seen:
            return False
        self.seen.add(shape)
        method.features(frames[: max(1, getattr(method, "batch_size", 1))])
        synchronize(self.device)
        return True


def record_timing(timings: dict[str, dict[str, float]], model_load_s: float | None,
                  aggregate_s: float = 0.0) -> dict[str, Any]:
    """The record's per-frame stage timings from per-sequence entries, plus version 1's keys.

    ``aggregate_s`` is the time spent combining per-sequence scores at the end, charged to ``score``.
    Stages a sequence did not time (state files of older runs) count as zero.
    """
    frames = sum(t["frames"] for t in timings.values())
    total = {stage: sum(t.get(key, 0.0) for t in timings.values()) for stage, key in STAGE_KEYS.items()}
    total["score"] += aggregate_s
    adapt = [t["adapt_s"] for t in timings.values() if "adapt_s" in t]
    per_frame = 1000 / max(frames, 1)
    return {
        "stages": {stage: seconds * per_frame for stage, seconds in total.items()},
        # reading runs on its own thread, one sequence ahead: what the compute still waited for it
        "read_wait_ms_per_frame": sum(t.get("read_wait_s", 0.0) for t in timings.values()) * per_frame,
        "wall_s": process_age_s(),
        "model_load_s": model_load_s,
        "frames": frames,
        # version 1 keys, for readers of older records
        "features_ms_per_frame": total["features"] * per_frame,
        "propagation_ms_per_frame": total["propagation"] * per_frame,
        "adapt_s_per_video": sum(adapt) / len(adapt) if adapt else None,
        "scoring_s": total["score"],
        "total_s": sum(total.values()) + sum(adapt),
    }
