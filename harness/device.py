"""The device a command runs on, waiting for it, and the peak memory it used: one owner for the
runner, the trainers and the benchmarks, so ``--device`` means the same everywhere. torch is imported
inside the functions: reading the peak RSS must not cost a torch import."""

from __future__ import annotations

import os
import resource
import sys
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` → this process's GPU (``LOCAL_RANK`` under
    torchrun); ``cuda:N`` as given. Asking for CUDA without one is a clear error, not a silent CPU run."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise HarnessError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}") from err
    if device.type not in ("cpu", "cuda"):
        raise HarnessError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"--device {name} was asked for, but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return device


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it has seen the work finish."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start counting :func:`peak_gpu_mib` from here (CUDA only; the process RSS peak cannot be reset)."""
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_mib(device: torch.device) -> float | None:
    """Peak memory allocated by torch on a CUDA device since the last reset; None on the CPU."""
    if device.type != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / 2**20, 1)
