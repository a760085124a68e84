"""What a scheduler job runs: one cell, as the ordinary ``harness`` commands in a subprocess.

Running the commands as subprocesses keeps every cell's output in its own log, keeps one cell's
crash from taking the sweep (or, under the debug executor, the sweep's own process) down, and makes
a cell exactly what ``harness sweep --dry-run`` prints. The function never raises: a failure is
reported in its return value and in the cell's state file, with the tail of the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback
from typing import Any

from harness.sweeps.grid import Cell, Layout
from harness.sweeps.state import DONE, FAILED, RUNNING, write_state

LOG_TAIL_LINES = 15


def log_tail(layout: Layout, cell: Cell, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = layout.log_path(cell.id).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _run(args: list[str], layout: Layout, cell: Cell, env: dict[str, str]) -> int:
    """One ``harness`` command with its output appended to the cell's log; the child is killed with us."""
    with open(layout.log_path(cell.id), "a") as log:
        log.write("$ harness " + " ".join(args) + "\n")
        log.flush()
        child = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=log, stderr=subprocess.STDOUT,
                                 env=env, stdin=subprocess.DEVNULL)
        write_state(layout, cell, child_pid=child.pid)
        try:
            return child.wait()
        except BaseException:  # interrupted or timed out: the cell's command must not outlive its job
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
            raise


def run_cell(cell: Cell, layout: Layout, threads: int | None = None, redefined: bool = False) -> dict[str, Any]:
    """Run ``cell``'s commands in order; returns ``{"cell", "status", "record" | "error", "log"}``.

    ``redefined``: the cell's folder holds results of other commands (the spec changed): they are
    recomputed with ``--force``, which removes only what those commands wrote.
    """
    layout.log_path(cell.id).parent.mkdir(parents=True, exist_ok=True)
    write_state(layout, cell, status=RUNNING, pid=os.getpid(), error=None)
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        for args in cell.commands():
            if redefined:
                args = [*args, "--force"]
            elif args[0] == "train" and cell.train_state is not None and cell.train_state.is_file():
                args = [*args, "--resume"]  # a killed training cell continues where it stopped
            code = _run(args, layout, cell, env)
            if code != 0:
                error = f"`harness {args[0]}` exited with status {code}"
                write_state(layout, cell, status=FAILED, error=error, child_pid=None)
                return {"cell": cell.id, "status": FAILED, "error": error, "log": str(layout.log_path(cell.id))}
        if not cell.record.is_file():
            error = f"`harness run` succeeded but wrote no {cell.record}"
            write_state(layout, cell, status=FAILED, error=error, child_pid=None)
            return {"cell": cell.id, "status": FAILED, "error": error, "log": str(layout.log_path(cell.id))}
    except Exception:  # never raise into the scheduler (the debug executor would open a debugger)
        error = traceback.format_exc(limit=3)
        write_state(layout, cell, status=FAILED, error=error, child_pid=None)
        return {"cell": cell.id, "status": FAILED, "error": error, "log": str(layout.log_path(cell.id))}
    write_state(layout, cell, status=DONE, record=str(cell.record), child_pid=None)
    return {"cell": cell.id, "status": DONE, "record": str(cell.record), "log": str(layout.log_path(cell.id))}
