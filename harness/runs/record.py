"""Run records: one JSON per (method, task, protocol, checkpoint), the only source tables are built from.

The keys are declared once, in :mod:`harness.runs.schema` (with ``SCHEMA_VERSION``); the runner builds a
:class:`~harness.runs.schema.RunRecord` and :func:`write_record` writes it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json
from harness.resources import source_checkout
from harness.runs.schema import RunRecord

REPO_ROOT = Path(__file__).resolve().parents[2]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: what the code of a run is: only these paths make a record's code "dirty" (results, docs and
#: records do not, so re-measuring or rebuilding the leaderboard never taints the next record)
SOURCE_PATHS = ("harness", "methods", "pyproject.toml")


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """Commit of the harness checkout and whether its *source* (:data:`SOURCE_PATHS`, tracked or
    new untracked files) differs from it (None outside git, and for an installed copy)."""
    root = root or source_checkout()
    if root is None:
        return None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *SOURCE_PATHS],
                               cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def code_state(at_start: tuple[str | None, bool | None], at_end: tuple[str | None, bool | None]) -> tuple[str | None, bool | None]:
    """Commit and dirty flag of the code a run *ran*: the checkout's state when the run started.

    A run imports its code when it starts; reading git only at the end would name whatever was
    committed meanwhile (a re-measurement of a record while someone commits beside it). If the
    checkout changed between start and end, no single clean commit names what ran for certain, so
    the run counts as dirty.
    """
    commit, dirty = at_start
    if commit is not None and at_end != at_start:
        return commit, True
    return commit, dirty


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere): "cpu" alone
    cannot tell a laptop from a server, and runtimes are compared only on the same device."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def package_version() -> str | None:
    """The installed crwbench version (None when run from a checkout that was never installed)."""
    try:
        return importlib.metadata.version("crwbench")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """1-, 5- and 15-minute load averages: a CPU timing means little without the load it ran under."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(device: Any, git: tuple[str | None, bool | None] | None = None) -> dict[str, Any]:
    """Library versions, device and git state, so a number can be traced to what produced it.

    ``git``: ``(commit, dirty)`` already settled by the caller (see :func:`code_state`); read now if absent.
    """
    import numpy
    import torch

    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    commit, dirty = git if git is not None else git_state()
    on_cuda = getattr(device, "type", str(device)) == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm_version,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_cuda else cpu_model(),
        "cpu_model": cpu_model(),
        "cuda": torch.version.cuda if on_cuda else None,
        "threads": torch.get_num_threads(),
        "package_version": package_version(),
        "load_avg": load_average(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def write_record(path: str | Path, record: RunRecord) -> None:
    """Write ``record`` as ``record.json`` (sorted keys, atomically): the keys it was given, as given."""
    atomic_write_json(path, record.as_json())
