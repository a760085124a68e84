"""Which runtimes may be compared: same device, same thread count, and code that still runs the same.

A millisecond figure means nothing beside another from a different CPU, a GPU, or another thread
count, so every record falls into a *runtime class* (device name + threads) and tables and plots
only put runtimes of one class side by side. A runtime measured with older propagation/runner code
(before the last commit that changed it) is kept but marked, as is one from uncommitted code.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.runs.schema import STAGES, EnvBlock, TimingBlock

REPO_ROOT = Path(__file__).resolve().parents[2]
#: code whose changes make earlier ms/frame figures stale: the propagation engine and the stage timer
#: that measures features + propagation (the runner's wiring and file I/O are not in that figure)
RUNTIME_PATHS = ("harness/engine", "harness/runs/timing.py")
OLDER_CODE = "◦"
DIRTY_CODE = "‡"


@dataclass(frozen=True)
class RuntimeClass:
    """Records whose runtimes are comparable: one device (CPU model or GPU name) and thread count."""

    device: str
    threads: int | None

    @property
    def label(self) -> str:
        threads = "threads unknown" if self.threads is None else f"{self.threads} thread{'s' * (self.threads != 1)}"
        return f"{self.device}, {threads}"

    @property
    def short(self) -> str:
        """A compact cell: ``cpu ×2`` / ``cuda ×8``; the full name is in the legend."""
        kind = "cuda" if _is_gpu(self.device) else "cpu"
        return f"{kind} ×{self.threads}" if self.threads is not None else kind


def _is_gpu(device: str) -> bool:
    return any(word in device.lower() for word in ("nvidia", "cuda", "gpu", "tesla", "radeon"))


def runtime_class(env: EnvBlock | None) -> RuntimeClass:
    """The class of a record's ``env``: the GPU or CPU model when recorded, else the bare device."""
    device = (env.device if env is not None else "") or "cpu"
    name = env.device_name if env is not None else None
    if device.startswith("cuda"):
        label = f"GPU {name}" if name else "GPU (model not recorded)"
    else:
        model = (env.cpu_model if env is not None else None) or (name if name and name != "cpu" else None)
        label = f"CPU {model}" if model else "CPU (model not recorded)"
    threads = env.threads if env is not None else None
    return RuntimeClass(label, int(threads) if isinstance(threads, int) else None)


def ms_per_frame(timing: TimingBlock | None) -> float | None:
    """Features + propagation, ms per frame: the method's and the engine's work, without file I/O.

    Version-2 records time each stage (``timing.stages``); version 1 recorded the two directly.
    None when features came from ``--feature-cache`` for any sequence: loading a file is not the method's work.
    """
    if timing is None or (timing.feature_cache or {}).get("hits"):
        return None
    stages = timing.stages or {}
    if "features" in stages and "propagation" in stages:
        return float(stages["features"]) + float(stages["propagation"])
    features, propagation = timing.features_ms_per_frame, timing.propagation_ms_per_frame
    if features is None or propagation is None:
        return None
    return float(features) + float(propagation)


def stage_text(timing: TimingBlock | None) -> str:
    """Per-stage ms/frame for the record detail (``read 3.1 · features 80.2 · ...``)."""
    if timing is None:
        return ""
    stages = timing.stages or {}
    if stages:
        return " · ".join(f"{name} {stages[name]:.1f}" for name in STAGES if name in stages)
    parts = [("features", timing.features_ms_per_frame), ("propagation", timing.propagation_ms_per_frame)]
    return " · ".join(f"{name} {value:.1f}" for name, value in parts if value is not None)


@cache
def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@cache
def last_runtime_change() -> str | None:
    """The last commit that changed :data:`RUNTIME_PATHS` (None outside a git checkout)."""
    return _git("log", "-1", "--format=%H", "--", *RUNTIME_PATHS) or None


def older_code(commit: str | None) -> bool | None:
    """Whether a record's commit predates the current runtime code (None: cannot tell, no git).

    A commit this checkout does not know counts as older: its code cannot be shown to be current.
    """
    latest = last_runtime_change()
    if latest is None:
        return None
    if not commit:
        return True
    if _git("cat-file", "-e", f"{commit}^{{commit}}") is None:
        return True
    return _git("merge-base", "--is-ancestor", latest, commit) is None
