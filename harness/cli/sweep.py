"""``harness sweep``: run a grid of ordinary harness cells on an existing scheduler, then report it."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run a grid of methods x checkpoints x knobs on a scheduler (Slurm, local, debug)",
        description="Expand a sweep spec (a YAML file, or a preset name) into cells, each an ordinary "
        "`harness run` (after `harness train` for training sweeps) with its own folder under "
        "RESULTS/sweeps/<name>/ (RESULTS as for `harness run`: --results-dir, $HARNESS_RESULTS, else "
        "./results), and run the cells that are not done through submitit. A rerun runs only missing or "
        "failed cells. Local and debug sweeps end with the report; the last stdout line is report.md's path.",
        epilog="examples:\n"
        "  harness sweep eval-knobs --dry-run\n"
        "  harness sweep eval-knobs --scale demo --parallel 1\n"
        "  harness sweep path-length --executor slurm --partition gpu --array-parallelism 8\n"
        "  harness sweep my-sweep.yaml --status\n"
        "  harness sweep my-sweep.yaml --report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="sweep spec YAML file or preset name (the harness's, and those trainers ship; "
                        "a name that is neither lists the presets)")
    parser.add_argument("--scale", help="a named scale of the spec (e.g. demo: what fits one small machine)")
    parser.add_argument("--out-dir", help="sweep folder (default RESULTS/sweeps/<name>/)")
    parser.add_argument("--results-dir", help="RESULTS: the results root (default $HARNESS_RESULTS, else ./results)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the cells, their state and estimated cost; run nothing")
    mode.add_argument("--status", action="store_true", help="show done / running / failed / missing per cell")
    mode.add_argument("--report", action="store_true", help="gather the cells' records into a table and plots")
    sched = parser.add_argument_group("scheduler")
    sched.add_argument("--executor", default="local", help="local (default), debug (in this process) or slurm")
    sched.add_argument("--parallel", type=int, help="local executor: cells at a time (default: the spec's, else 1)")
    sched.add_argument("--timeout-min", type=float, help="time limit per cell in minutes (default: the spec's)")
    sched.add_argument("--partition", help="slurm: partition (default: the spec's)")
    sched.add_argument("--gpus", type=int, help="GPUs per cell (default: the spec's resources)")
    sched.add_argument("--array-parallelism", type=int, help="slurm: cells of one array running at once")
    parser.set_defaults(func=main)


def _print_cells(spec, layout, cells, with_cost: bool) -> None:
    from harness.sweeps.cost import estimate, human
    from harness.sweeps.state import cell_status, read_job

    costs = estimate(spec, cells) if with_cost else []
    width = max(len(c.id) for c in cells)
    todo_s, unknown, todo = 0.0, 0, 0
    for i, cell in enumerate(cells):
        status, state = cell_status(layout, cell)
        line = f"{cell.id:<{width}}  {status:<8} {cell.kind:<5}"
        if with_cost:
            line += f"  est. {human(costs[i].seconds):>9}  {costs[i].detail}"
            if status != "done":
                todo += 1
                if costs[i].seconds is None:
                    unknown += 1
                else:
                    todo_s += costs[i].seconds
        elif status == "running":
            job = read_job(layout, cell)
            line += f"  {job.get('executor')} job {job.get('job_id')} since {job.get('submitted')}"
        elif status == "failed":
            line += f"  {(state.get('error') or '').strip().splitlines()[-1:]}  log: {layout.log_path(cell.id)}"
        print(line)
    if with_cost:
        device = "CPU" if spec.device == "cpu" else "GPU"
        print(f"to run: {todo} of {len(cells)} cells, est. {todo_s / 3600:.3g} {device}-hours ({human(todo_s)})"
              + (f", {unknown} cell(s) of unknown cost" if unknown else ""))
        if spec.cost.get("source"):
            print(f"cost figures: {spec.cost['source']}")
        for cell in cells[:1]:
            print("first cell runs:", *(" ".join(["harness", *args]) for args in cell.commands()), sep="\n  ")


def main(args: argparse.Namespace) -> int:
    from filelock import FileLock, Timeout

    from harness.errors import HarnessError
    from harness.sweeps import plan
    from harness.sweeps.executors import Launch, run_here, stop_leftovers, submit_slurm
    from harness.sweeps.report import write_report
    from harness.sweeps.state import DONE, FAILED, RUNNING, cell_status

    spec, layout, cells = plan(args.spec, args.scale, args.out_dir, args.results_dir)
    if args.dry_run or args.status:
        print(f"sweep {spec.name}: {len(cells)} cells in {layout.root}", file=sys.stderr)
        _print_cells(spec, layout, cells, with_cost=args.dry_run)
        return 0
    if args.report:
        print(write_report(spec, cells, layout))
        return 0
    launch = Launch(executor=args.executor, parallel=args.parallel, timeout_min=args.timeout_min,
                    partition=args.partition, gpus=args.gpus, array_parallelism=args.array_parallelism)
    layout.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(layout.lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise HarnessError(f"another `harness sweep` is running this sweep (lock {layout.lock}); "
                           "use --status to follow it") from None
    try:
        stopped = stop_leftovers(cells, layout)
        if stopped:
            print(f"stopped {len(stopped)} job(s) left running by a killed sweep: {', '.join(stopped)}", file=sys.stderr)
        statuses = {cell.id: cell_status(layout, cell)[0] for cell in cells}
        todo = [c for c in cells if statuses[c.id] not in (DONE, RUNNING)]
        skipped = [c.id for c in cells if statuses[c.id] == DONE]
        queued = [c.id for c in cells if statuses[c.id] == RUNNING]
        print(f"sweep {spec.name}: {len(cells)} cells; {len(skipped)} done (skipped), {len(queued)} still queued or "
              f"running elsewhere, {len(todo)} to run with the {launch.executor} executor", file=sys.stderr)
        if launch.executor == "slurm":
            submit_slurm(spec, todo, layout, launch)
            print(f"follow with: harness sweep {args.spec} --status; then --report", file=sys.stderr)
            print(layout.root)
            return 0
        outcomes = run_here(spec, todo, layout, launch)
    finally:
        lock.release()
    failed = [o for o in outcomes if o["status"] == FAILED]
    for outcome in failed:
        print(f"cell {outcome['cell']} failed: {outcome['error'].strip().splitlines()[-1]}\n  log: {outcome['log']}",
              file=sys.stderr)
        from harness.sweeps.cell import log_tail

        cell = next(c for c in cells if c.id == outcome["cell"])
        print("  " + log_tail(layout, cell, 5).replace("\n", "\n  "), file=sys.stderr)
    print(write_report(spec, cells, layout))
    return 1 if failed else 0
