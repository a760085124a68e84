"""``harness data download|check NAME``: fetch a dataset from its card, or validate a data root."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  harness data download davis --data-root ~/data/davis
  harness data download davis --data-root ~/data/davis --parts trainval,test-dev
  HARNESS_DATA=~/data harness data download jhmdb
  harness data download vip            # prints what to fetch by hand and where to put it
  harness data check davis --data-root ~/data/davis
  harness data check jhmdb --sequences catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2 --full
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data", help="download and check datasets", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="NAME is a task (davis, davis2016, jhmdb, vip) or a dataset card (davis2017, kinetics400).",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    download = actions.add_parser("download", help="fetch, verify and unpack a dataset", epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("name", metavar="NAME", help="task or dataset card name")
    download.add_argument("--data-root", metavar="DIR", help="where to put it (default $HARNESS_DATA/<task>)")
    download.add_argument("--mirror", metavar="URL", help="base URL replacing the card's (env HARNESS_MIRROR)")
    download.add_argument("--parts", metavar="A,B", help="which parts of the card to fetch (default: its default parts)")
    download.add_argument("--force", action="store_true", help="download and unpack again even if done before")
    download.add_argument("--retries", type=int, default=5, metavar="N", help="retries per file (default 5)")
    download.set_defaults(func=main)

    check = actions.add_parser("check", help="validate a data root against its dataset card", epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("name", metavar="NAME", help="task or dataset card name")
    check.add_argument("--data-root", metavar="DIR", help="the data root (default $HARNESS_DATA/<task>, then the sample)")
    check.add_argument("--sequences", metavar="A,B", help="check only these sequences (JHMDB: class/clip)")
    check.add_argument("--split", metavar="NAME", help="split to check (default: the card's default split)")
    check.add_argument("--full", action="store_true", help="decode every frame, not only headers and first frames")
    check.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return _download(args) if args.data_command == "download" else _check(args)


def _split_list(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def _download(args: argparse.Namespace) -> int:
    from harness.data.cards import find_card
    from harness.data.download import RetryPolicy, download_dataset, download_root, manual_instructions
    from harness.errors import DataError

    card = find_card(args.name)
    if card.method == "manual":
        try:
            root = download_root(card, args.data_root, create=False)
        except DataError:
            root = None
        print(manual_instructions(card, root))
        then = (f"then run `harness data check {card.default_task} --data-root DIR`" if card.check is not None
                else "then use it as shown above")
        raise DataError(f"{card.name} cannot be downloaded automatically: fetch the files above by hand, {then}")
    root = download_root(card, args.data_root)
    download_dataset(card, root, mirror=args.mirror, force=args.force, parts=_split_list(args.parts),
                     policy=RetryPolicy(retries=args.retries))
    if card.check is not None:
        print(f"done; check it with: harness data check {card.default_task} --data-root {root}", file=sys.stderr)
    print(Path(root).resolve())
    return 0


def _check(args: argparse.Namespace) -> int:
    from harness.cli.common import parse_sequences
    from harness.data.cards import find_card
    from harness.data.check import format_problems, run_check
    from harness.data.roots import resolve_data_root

    card = find_card(args.name)
    root, is_sample = resolve_data_root(card.default_task, args.data_root)
    if is_sample:
        print(f"no --data-root or $HARNESS_DATA/{card.default_task}: checking the shipped sample {root}",
              file=sys.stderr)
    report = run_check(args.name, root, parse_sequences(args.sequences), split=args.split, full=args.full)
    if report.problems:
        print(format_problems(report))
        return 1
    decoded = "all frames decoded" if args.full else "headers read, first frames decoded"
    print(f"OK: {card.title} at {report.root} (split {report.split}): {len(report.sequences)} sequences, "
          f"{report.frames} frames, {report.annotations} annotations ({decoded}; {report.seconds:.1f} s)")
    return 0
