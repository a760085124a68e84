"""``harness schema``: print the run record's JSON Schema, or check every record under a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "schema",
        help="print the run-record JSON Schema or check records against it",
        description="Without --check: print the JSON Schema of run records (what `harness run` writes and "
        "`harness leaderboard` reads), for tools that validate records without importing the harness. "
        "With --check DIR: validate every record.json under DIR; exit 1 if any fails, naming the key.",
        epilog="examples:\n  harness schema > record.schema.json\n  harness schema --check results/runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", type=Path, metavar="DIR", help="validate every record.json under DIR")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.leaderboard.collect import RecordError, find_record_files, read_record
    from harness.runs.schema import json_schema_text

    if args.check is None:
        sys.stdout.write(json_schema_text())
        return 0
    paths = find_record_files([args.check])
    failed = 0
    for path in paths:
        try:
            read_record(path)
        except RecordError as err:
            failed += 1
            print(f"invalid: {err}", file=sys.stderr)
    print(f"{len(paths) - failed} of {len(paths)} record(s) under {args.check} are valid", file=sys.stderr)
    return 1 if failed else 0
