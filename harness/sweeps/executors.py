"""Handing cells to a real scheduler: submitit's Slurm, local and debug executors.

- ``slurm``: training cells and evaluation cells go out as job arrays with their own resources
  (partition, GPUs per cell, time limit, array parallelism from the spec or the flags). Evaluation
  cells that can reuse another cell's features wait for it with ``--dependency=afterany``. The
  command returns once the arrays are queued; ``--status`` follows them.
- ``local``: one submitit job per cell on this machine, at most ``--parallel`` at a time, each with
  the spec's time limit (submitit's own default would kill a cell after 2 minutes). Interrupting
  the sweep cancels its jobs; a rerun stops the jobs a killed sweep left behind before it starts.
- ``debug``: cells run one after the other inside this process (submitit's DebugExecutor).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.sweeps.cell import run_cell
from harness.sweeps.grid import Cell, Layout, leaders_first
from harness.sweeps.spec import SweepSpec
from harness.sweeps.state import (
    FAILED,
    RUNNING,
    SUBMITTED,
    is_redefined,
    process_alive,
    read_job,
    read_state,
    write_job,
    write_state,
)

EXECUTORS = ("local", "debug", "slurm")
POLL_S = 0.5


@dataclass
class Launch:
    """Scheduler settings from the command line; each one left ``None`` falls back to the spec."""

    executor: str = "local"
    parallel: int | None = None
    timeout_min: float | None = None
    partition: str | None = None
    gpus: int | None = None
    array_parallelism: int | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise HarnessError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        for name in ("parallel", "timeout_min", "array_parallelism"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise HarnessError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.gpus is not None and self.gpus < 0:
            raise HarnessError(f"--gpus must be >= 0, got {self.gpus}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- leftovers of a killed sweep --------------------------------------------------------------
def _stop(pid: int, must_contain: str) -> None:
    if not process_alive(pid, must_contain):
        return
    os.kill(pid, signal.SIGINT)
    for _ in range(100):
        if not process_alive(pid, must_contain):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def stop_leftovers(cells: list[Cell], layout: Layout) -> list[str]:
    """Stop local jobs (and their ``harness`` commands) that a killed sweep left running on this sweep's cells.

    Only called while holding the sweep's lock, so these jobs belong to no live sweep; stopping them
    keeps two processes from ever writing one cell's folder at once.
    """
    stopped = []
    for cell in cells:
        state, job = read_state(layout, cell), read_job(layout, cell)
        if job.get("executor") != "local" or state.get("status") not in (SUBMITTED, RUNNING):
            continue
        _stop(int(job["job_id"]), "submitit.local._local")
        if state.get("child_pid"):
            _stop(int(state["child_pid"]), str(layout.cell_dir(cell.id)))
        write_state(layout, cell, status=FAILED, error="interrupted: its sweep was killed", child_pid=None)
        stopped.append(cell.id)
    return stopped


# -- local and debug ---------------------------------------------------------------------------
@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that the sweep cancels its jobs on the way out."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _collect(job: Any, cell: Cell, layout: Layout) -> dict[str, Any]:
    try:
        return job.result()
    except Exception as err:  # killed, timed out, or the job could not even start
        error = f"job {job.job_id} ended without a result: {str(err).strip().splitlines()[0] if str(err).strip() else err!r}"
        write_state(layout, cell, status=FAILED, error=error, child_pid=None)
        return {"cell": cell.id, "status": FAILED, "error": error, "log": str(layout.log_path(cell.id))}


def run_here(spec: SweepSpec, cells: list[Cell], layout: Layout, launch: Launch) -> list[dict[str, Any]]:
    """Run ``cells`` with the local or debug executor and wait for them; returns one outcome per cell."""
    import submitit

    leaders, followers = leaders_first(cells)
    waiting_groups = {cell.feature_group for cell in leaders}
    queue = leaders + followers
    parallel = 1 if launch.executor == "debug" else (launch.parallel or int(spec.local.get("parallel", 1)))
    threads = max(1, (os.cpu_count() or 1) // parallel) if launch.executor == "local" else None
    if launch.executor == "debug":
        executor: Any = submitit.DebugExecutor(folder=layout.submitit / "%j")
        gpus = 0
    else:
        executor = submitit.LocalExecutor(folder=layout.submitit / "%j")
        gpus = _visible_gpus()
    outcomes: list[dict[str, Any]] = []
    running: dict[Any, Cell] = {}
    started = 0
    with _terminate_as_interrupt():
        try:
            while queue or running:
                ready = [c for c in queue if c in leaders or c.feature_group not in waiting_groups]
                for cell in ready[: max(0, parallel - len(running))]:
                    queue.remove(cell)
                    if launch.executor == "local":
                        resource = spec.resource(cell.kind)
                        wanted = resource["gpus"] if launch.gpus is None else launch.gpus
                        timeout = launch.timeout_min or spec.local.get("timeout_min") or resource["timeout_min"]
                        use = min(wanted, gpus)  # evaluation cells on one GPU share it; none on a CPU machine
                        executor.update_parameters(timeout_min=timeout, gpus_per_node=use,
                                                   visible_gpus=tuple((started + k) % gpus for k in range(use)))
                    redefined = is_redefined(layout, cell)
                    write_state(layout, cell, status=SUBMITTED, error=None)
                    job = executor.submit(run_cell, cell, layout, threads, redefined)
                    write_job(layout, cell, launch.executor, job.job_id)
                    started += 1
                    running[job] = cell
                    if launch.executor == "debug":
                        break  # debug jobs run on collection: one at a time
                finished = [job for job in running if launch.executor == "debug" or job.done()]
                if not finished:
                    time.sleep(POLL_S)
                for job in finished:
                    cell = running.pop(job)
                    outcome = _collect(job, cell, layout)
                    outcomes.append(outcome)
                    if cell in leaders:
                        waiting_groups.discard(cell.feature_group)
                    _log(f"[{len(outcomes)}/{len(cells)}] {cell.id}: {outcome['status']}"
                         + (f" ({outcome['error'].strip().splitlines()[-1]})" if outcome.get("error") else ""))
        except BaseException:
            for job, cell in running.items():
                job.cancel()
                process = getattr(job, "_process", None)
                if process is not None:
                    try:
                        process.wait(timeout=15)
                    except Exception:
                        process.kill()
                write_state(layout, cell, status=FAILED, error="interrupted: the sweep was stopped", child_pid=None)
            raise
    return outcomes


# -- slurm -------------------------------------------------------------------------------------
def _slurm_parameters(spec: SweepSpec, launch: Launch, kind: str) -> dict[str, Any]:
    resource = spec.resource(kind)
    slurm = spec.slurm
    params: dict[str, Any] = {
        "job_name": f"{spec.name}-{kind}",
        "time": int(launch.timeout_min or resource["timeout_min"]),
        "gpus_per_node": resource["gpus"] if launch.gpus is None else launch.gpus,
        "cpus_per_task": resource["cpus"],
        "array_parallelism": launch.array_parallelism or int(slurm.get("array_parallelism", 16)),
    }
    partition = launch.partition or slurm.get("partition")
    if partition:
        params["partition"] = partition
    if resource.get("mem_gb"):
        params["mem"] = resource["mem_gb"]
    for key in ("account", "qos", "constraint"):
        if slurm.get(key):
            params[key] = slurm[key]
    if slurm.get("additional"):
        params["additional_parameters"] = dict(slurm["additional"])
    return params


def submit_slurm(spec: SweepSpec, cells: list[Cell], layout: Layout, launch: Launch) -> list[dict[str, Any]]:
    """Queue ``cells`` as Slurm job arrays and return at once (one outcome per cell, status ``submitted``)."""
    import submitit

    leaders, followers = leaders_first(cells)
    outcomes: list[dict[str, Any]] = []
    after: dict[str, str] = {}
    for kind in ("train", "eval"):
        wave = [c for c in leaders if c.kind == kind]
        if wave:
            after[kind] = _submit_array(submitit, spec, wave, layout, launch, kind, None, outcomes)
    eval_followers = [c for c in followers if c.kind == "eval"]
    if eval_followers:
        _submit_array(submitit, spec, eval_followers, layout, launch, "eval", after.get("eval"), outcomes)
    return outcomes


def _submit_array(submitit: Any, spec: SweepSpec, cells: list[Cell], layout: Layout, launch: Launch, kind: str,
                  depends_on: str | None, outcomes: list[dict[str, Any]]) -> str:
    executor = submitit.SlurmExecutor(folder=layout.submitit / "%j")
    params = _slurm_parameters(spec, launch, kind)
    if depends_on:
        params["dependency"] = f"afterany:{depends_on}"  # reuse the features those cells cache
    executor.update_parameters(**params)
    redefined = [is_redefined(layout, cell) for cell in cells]
    for cell in cells:
        write_state(layout, cell, status=SUBMITTED, error=None)
    with executor.batch():
        jobs = [executor.submit(run_cell, cell, layout, None, again) for cell, again in zip(cells, redefined, strict=True)]
    for job, cell in zip(jobs, cells, strict=True):
        write_job(layout, cell, "slurm", job.job_id)
        outcomes.append({"cell": cell.id, "status": SUBMITTED, "job_id": job.job_id})
    array_id = jobs[0].job_id.split("_")[0]
    _log(f"queued {len(cells)} {kind} cell(s) as Slurm job {array_id}"
         + (f" (after job {depends_on})" if depends_on else ""))
    return array_id
