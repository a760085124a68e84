"""``harness bench NAME``: run a benchmark and write its JSON report under ``results/bench/``."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from harness.io import atomic_write_json
from harness.perf import BENCHMARKS, REPORT_DIR
from harness.resources import results_dir
from harness.runs.record import code_state, cpu_model, git_state, load_average


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="run a benchmark and write a JSON report",
        epilog="examples:\n  harness bench scorer\n  harness bench propagation --out results/bench/propagation.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--out", type=Path, default=None, help="report path (default RESULTS/bench/NAME.json)")
    parser.add_argument("--results-dir", help="RESULTS: the results root (default $HARNESS_RESULTS, else ./results)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="flags of the benchmark itself")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.name])
    extra = argparse.ArgumentParser(prog=f"harness bench {args.name}")
    module.add_arguments(extra)
    extra.add_argument("--out", type=Path, default=args.out, help="report path (also accepted after NAME)")
    options = extra.parse_args(args.options)
    out = options.out or results_dir(args.results_dir) / REPORT_DIR / f"{args.name}.json"
    git_at_start, load_before = git_state(), load_average()
    report = module.main(options)
    commit, dirty = code_state(git_at_start, git_state())
    # every report says which code and machine state produced it, whatever the benchmark itself records
    report["measured_with"] = {"git_commit": commit, "git_dirty": dirty, "cpu_model": cpu_model(),
                               "load_average_before": load_before, "load_average_after": load_average()}
    atomic_write_json(out, report)
    print(out.resolve())
    return 0
