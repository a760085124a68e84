"""Run records: one JSON per (method, task, protocol, checkpoint), the only source tables are built from.

The keys are declared once, in :mod:`harness.runs.schema` (with ``SCHEMA_VERSION``).
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / 2**20, 1)


def git_state() -> tuple[str | None, bool | None]:
    """Commit of the harness checkout and whether it has uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def environment(device: Any) -> dict[str, Any]:
    """Library versions, device and git state, so a number can be traced to what produced it."""
    import numpy
    import torch

    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    commit, dirty = git_state()
    on_cuda = getattr(device, "type", str(device)) == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm_version,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_cuda else platform.processor() or "cpu",
        "cuda": torch.version.cuda if on_cuda else None,
        "threads": torch.get_num_threads(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
