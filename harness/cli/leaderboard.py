"""``harness leaderboard``: build results/leaderboard.{md,csv,html} and plots from run records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.resources import results_dir, results_flag, shipped


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "leaderboard",
        help="build tables and plots from run records",
        description="Read run records (record.json, found recursively) and write leaderboard.md,\n"
        "leaderboard.csv, a self-contained leaderboard.html and plots/*.svg. Runs are ranked only\n"
        "within one task + protocol hash; published numbers from reported.yaml are shown beside them.\n"
        "Unusable records are listed on stderr and in the tables' 'skipped records' section.",
        epilog="examples:\n  harness leaderboard\n  harness leaderboard results/runs/davis --out-dir /tmp/board",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="record files or folders to search (default: RESULTS/runs)"
    )
    parser.add_argument("--results-dir", help="RESULTS: the results root (default $HARNESS_RESULTS, else ./results)")
    parser.add_argument("--out-dir", help="where the leaderboard files go (default: RESULTS)")
    parser.add_argument(
        "--reported",
        default=None,
        help="published numbers to show beside the runs (default: the shipped results/reported.yaml)",
    )
    parser.add_argument("--no-reported", action="store_true", help="show reproduced runs only")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.leaderboard import build_leaderboard

    reported = None
    if not args.no_reported:
        if args.reported is not None:
            reported = Path(args.reported)
            if not reported.is_file():
                raise HarnessError(f"no such file: {reported}")
        elif shipped("reported.yaml").is_file():
            reported = shipped("reported.yaml")
    results = results_dir(args.results_dir)
    paths = args.paths or [results / "runs"]
    from harness.runs.outdir import require_writable_dir

    flag = "--out-dir" if args.out_dir else results_flag(args.results_dir)
    require_writable_dir(Path(args.out_dir or results), flag)  # a sentence now, not a traceback later
    result = build_leaderboard(paths, args.out_dir or results, reported_path=reported)
    for skipped in result.skipped:
        print(f"harness leaderboard: skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    print(f"harness leaderboard: {result.runs} run record(s), {len(result.skipped)} skipped", file=sys.stderr)
    for path in result.written:
        print(path)
    return 0
