"""Where a task's data lives: ``--data-root``, then ``$HARNESS_DATA/<task>``, then the shipped sample."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import DataError
from harness.resources import shipped

#: the shipped ``datasets/`` folder (the repository's, or the installed copy's): cards and the real sample
DATASETS_DIR = shipped("datasets")
SAMPLE_DIR = DATASETS_DIR / "sample"
#: a lone subfolder of one of these names is entered automatically
WRAPPER_NAMES = ("DAVIS", "DAVIS2017", "DAVIS2016", "JHMDB", "VIP")


def resolve_data_root(task: str, data_root: str | Path | None, sample_name: str | None = None) -> tuple[Path, bool]:
    """The folder holding the benchmark's own top-level folders, and whether it is the shipped sample.

    A missing explicit root is an error, and so is a ``HARNESS_DATA`` that is not a folder or lacks the
    task's folder: we never silently fall back to the sample when the user named a place.
    """
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"--data-root {root} does not exist or is not a folder")
        return _enter_wrapper(root), False
    env = os.environ.get("HARNESS_DATA")
    if env:
        parent = Path(env).expanduser()
        if not parent.is_dir():
            state = "is a file" if parent.exists() else "does not exist"
            raise DataError(f"HARNESS_DATA={env} {state}: it must be a folder holding one folder per task "
                            f"('{task}/', …); fix it, pass --data-root DIR, or unset it to use the shipped sample")
        root = parent / task
        if not root.is_dir():
            present = sorted(p.name + "/" for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise DataError(f"HARNESS_DATA={env} has no folder '{task}/' (it holds: {', '.join(present) or 'nothing'}); "
                            "add it, pass --data-root DIR, or unset HARNESS_DATA to use the shipped sample")
        return _enter_wrapper(root), False
    sample = SAMPLE_DIR / (sample_name or task)
    if sample.is_dir():
        return _enter_wrapper(sample), True
    raise DataError(
        f"no data for task {task!r}: pass --data-root DIR, or set HARNESS_DATA to a folder holding "
        f"'{task}/'. `harness data download {task}` fetches it where the dataset allows."
    )


def _enter_wrapper(root: Path) -> Path:
    children = [p for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []
    dirs = [p for p in children if p.is_dir()]
    if len(dirs) == 1 and dirs[0].name in WRAPPER_NAMES:
        return dirs[0]
    return root
