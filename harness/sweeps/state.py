"""What the sweep knows of each cell: one small JSON file per cell, written by the sweep when it
submits a cell and by the cell itself when it starts and ends.

A cell is **done** when its record exists, was written by the same commands (digest), the data
still has the fingerprint the record names and, when it evaluates a checkpoint, that file still has
the sha256 the record names; **running** while its job
is alive (a local job's process, a Slurm job the scheduler still lists); **failed** when its last
attempt failed; **missing** otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.data.fingerprint import data_fingerprint
from harness.errors import HarnessError
from harness.io import atomic_write_json, sha256_file
from harness.runs.record import now_iso
from harness.sweeps.grid import Cell, Layout

DONE, RUNNING, FAILED, MISSING, SUBMITTED = "done", "running", "failed", "missing", "submitted"
LIVE_SLURM = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "UNKNOWN"}


def read_state(layout: Layout, cell: Cell) -> dict[str, Any]:
    path = layout.state_path(cell.id)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(layout: Layout, cell: Cell, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the cell's state file (atomically) and return the new state."""
    state = {**read_state(layout, cell), **fields, "cell": cell.id, "digest": cell.digest, "updated": now_iso()}
    atomic_write_json(layout.state_path(cell.id), state)
    return state


def job_path(layout: Layout, cell: Cell) -> Path:
    return layout.state_path(cell.id).with_suffix(".job.json")


def write_job(layout: Layout, cell: Cell, executor: str, job_id: str) -> None:
    """The scheduler's id for the cell's job, in a file of its own: the cell writes its state file meanwhile."""
    atomic_write_json(job_path(layout, cell), {"executor": executor, "job_id": job_id, "submitted": now_iso()})


def read_job(layout: Layout, cell: Cell) -> dict[str, Any]:
    try:
        return json.loads(job_path(layout, cell).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def record_is_current(cell: Cell, state: dict[str, Any]) -> bool:
    """The cell's record was written by the same commands from the same checkpoint and data contents."""
    if state.get("status") != DONE or state.get("digest") != cell.digest or not cell.record.is_file():
        return False
    try:
        record = json.loads(cell.record.read_text())
        if cell.checkpoint:
            named = (record.get("checkpoint") or {}).get("sha256")
            if not Path(cell.checkpoint).is_file() or named != sha256_file(cell.checkpoint):
                return False
        fingerprint = (record.get("data") or {}).get("fingerprint")
        if fingerprint:
            config = record["config"]
            return data_fingerprint(record["task"], config["data_root"], config["sequences"]) == fingerprint
    except (OSError, KeyError, ValueError, HarnessError):  # unreadable record or data gone: not current
        return False
    return True


def is_redefined(layout: Layout, cell: Cell) -> bool:
    """The cell's folder holds a record of other commands (its spec changed since it ran)."""
    previous = read_state(layout, cell).get("digest")
    return previous is not None and previous != cell.digest and cell.record.is_file()


def process_alive(pid: int | None, must_contain: str) -> bool:
    """Whether ``pid`` runs and its command line contains ``must_contain`` (a recycled pid is not our job)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return must_contain in cmdline


def _slurm_state(layout: Layout, job_id: str) -> str:
    import submitit

    try:
        return submitit.SlurmJob(folder=layout.submitit / "%j", job_id=job_id).state
    except Exception:  # sacct missing or failing: the scheduler cannot say; assume it still holds the job
        return "UNKNOWN"


def job_alive(layout: Layout, job: dict[str, Any]) -> bool:
    executor = job.get("executor")
    if executor == "local":
        return process_alive(int(job["job_id"]), "submitit.local._local")
    if executor == "slurm":
        return _slurm_state(layout, str(job["job_id"])).split(" ")[0] in LIVE_SLURM
    return False  # the debug executor runs in the sweep's own process: nothing outlives it


def cell_status(layout: Layout, cell: Cell) -> tuple[str, dict[str, Any]]:
    state = read_state(layout, cell)
    if record_is_current(cell, state):
        return DONE, state
    if state.get("status") in (SUBMITTED, RUNNING) and job_alive(layout, read_job(layout, cell)):
        return RUNNING, state
    if state.get("status") == FAILED and state.get("digest") == cell.digest:
        return FAILED, state
    return MISSING, state
