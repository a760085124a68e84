"""``harness score``: score a folder of predictions in a benchmark's official layout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli.common import add_common_data_flags, parse_sequences


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score",
        help="score a folder of predictions against ground truth",
        description="Score predictions written in the official layout (DAVIS: DIR/<seq>/<frame>.png palette "
        "PNGs; JHMDB: DIR/<class>/<clip>.npy; VIP: DIR/<video>/<frame>.png class ids).",
        epilog="examples:\n"
        "  harness score --task davis --data-root ~/data/DAVIS --predictions results/runs/davis/crw/crw-xxxx\n"
        "  harness score --task davis --predictions DIR --scorer official --out scores.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, help="registered task name")
    parser.add_argument("--predictions", required=True, type=Path, help="folder of predictions")
    add_common_data_flags(parser)
    parser.add_argument("--protocol", default="crw", help="protocol family the predictions were made under "
                        "(tasks with scoring options, e.g. JHMDB visibility, read them from it)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="protocol.* overrides the run used, e.g. protocol.jhmdb_visibility=gt")
    parser.add_argument("--out", type=Path, help="write the scores as JSON here")
    parser.add_argument("--scorer", choices=("harness", "official"), default="harness",
                        help="official = cross-check with davis2017-evaluation (DAVIS only; installed separately)")
    parser.add_argument("--official-frames", action="store_true",
                        help="DAVIS: accept what the official evaluator accepts — no prediction for the first and "
                        "last frame, files for frames without ground truth ignored (listed); by default "
                        "predictions must name exactly the ground truth's frames")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.config import parse_sets
    from harness.data.roots import resolve_data_root
    from harness.engine.protocol import resolve_protocol
    from harness.errors import HarnessError
    from harness.io import atomic_write_json
    from harness.registry import get_task
    from harness.runs.outdir import require_writable_file

    if not args.predictions.is_dir():
        raise HarnessError(f"--predictions {args.predictions}: no such folder")
    if args.out:
        require_writable_file(args.out, "--out")  # before scoring, not after
    entry = get_task(args.task)
    root, is_sample = resolve_data_root(entry.name, args.data_root)
    if is_sample:
        print(f"note: scoring against the shipped sample in {root}", file=sys.stderr)
    task = entry.factory(root, {"sequences": parse_sequences(args.sequences), "limit": args.limit})
    overrides = parse_sets(args.sets)
    ignored = [f"{section}.{key}" for section in ("method", "task", "adapt") for key in overrides[section]]
    if ignored:
        raise HarnessError(f"--set {', '.join(ignored)}: score reads only protocol.* settings (the predictions are "
                           "already made)")
    task.config["protocol"] = resolve_protocol(args.protocol, entry.name, overrides["protocol"],
                                               task.protocol_defaults(args.protocol))
    names = task.sequences()
    _note_unscored_folders(args.predictions, names)
    if (args.official_frames or args.scorer == "official") and not task.official_scorer:
        flag = "--scorer official" if args.scorer == "official" else "--official-frames"
        raise HarnessError(f"{flag}: task {entry.name!r} has no official evaluator to follow (it scores every frame)")
    if args.scorer == "official":
        result = task.score_official(args.predictions, names, official_frames=args.official_frames)
    elif args.official_frames:
        result = task.score_predictions(args.predictions, names, official_frames=True)
    else:
        result = task.score_predictions(args.predictions, names)
    shown = {k: round(v, 6) for k, v in result["metrics"].items() if v is not None}
    print(json.dumps(shown, indent=1))  # the answer goes to stdout; notes and warnings go to stderr
    if args.out:
        atomic_write_json(args.out, result)
        print(f"scores written to {args.out.resolve()}", file=sys.stderr)
    return 0


def _note_unscored_folders(pred_dir: Path, names: list[str]) -> None:
    """Say which folders of ``pred_dir`` are not scored: a sequence outside the split (or ``--sequences``), or a
    misspelt one, would otherwise vanish from the numbers without a word. A run's own folders are not named."""
    scored = {name.split("/")[0] for name in names}
    unscored = sorted(p.name for p in pred_dir.iterdir()
                      if p.is_dir() and p.name not in scored and not p.name.startswith(".") and p.name != "visualize")
    if unscored:
        shown = ", ".join(unscored[:10]) + (f" … and {len(unscored) - 10} more" if len(unscored) > 10 else "")
        print(f"note: {len(unscored)} folder(s) of {pred_dir} are not among the {len(scored)} sequences scored, "
              f"so they are not scored: {shown}", file=sys.stderr)
