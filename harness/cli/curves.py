"""``harness curves``: training runs side by side, evaluation score against clips seen."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curves",
        help="compare training runs: evaluation score against clips seen, one plot and table",
        description="Read the --eval-every evaluations of several `harness train` output folders and write "
        "curves.svg, curves.md and curves.json into --out-dir: each run's score against the clips it had seen "
        "(step x batch size), with its training wall time. The runs must share task, metric, protocol hash "
        "and evaluation sequences.",
        epilog="example:\n  harness curves runs/method-a runs/method-b --out-dir results/train/compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="`harness train --out-dir` folders")
    parser.add_argument("--out-dir", required=True, type=Path, help="where curves.{svg,md,json} go")
    parser.add_argument("--title", default="", help="plot title (default: metric, task and data)")
    parser.add_argument("--reference", action="append", default=[], type=Path, metavar="RECORD",
                        help="a run record (e.g. an untrained floor) drawn as a level line; repeatable")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.training.compare import compare

    paths = compare(args.runs, args.out_dir, args.title, args.reference)
    print(paths["svg"].resolve())
    return 0
