"""The ``harness`` command: thin subcommands that parse flags and call the library.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and ``main(args) -> int``;
modules are imported only when their subcommand runs, so ``harness list`` starts fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import traceback

from harness.errors import HarnessError, Terminated

SUBCOMMANDS = {
    "run": ("harness.cli.run", "evaluate a method on a task by label propagation"),
    "score": ("harness.cli.score", "score a folder of predictions against ground truth"),
    "list": ("harness.cli.listing", "list registered methods, tasks and protocols"),
    "train": ("harness.cli.train", "train a trainable method (`harness list` marks them) from raw video"),
    "curves": ("harness.cli.curves", "compare training runs: evaluation score against clips seen, one plot and table"),
    "leaderboard": ("harness.cli.leaderboard", "build tables and plots from run records"),
    "data": ("harness.cli.data", "download and check datasets"),
    "bench": ("harness.cli.bench", "run a benchmark and write a JSON report"),
    "sweep": ("harness.cli.sweep", "run a grid of methods x checkpoints x knobs on a scheduler"),
    "schema": ("harness.cli.schema", "print the run-record JSON Schema or check records against it"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Benchmark harness for self-supervised visual correspondence (label propagation).",
        epilog="examples:\n  harness run --method crw --task davis\n  harness list\n  harness score --task davis --predictions DIR",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from harness import __version__

    parser.add_argument("--version", action="version", version=f"crwbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HarnessError as err:
        print(f"harness {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        print(f"harness {args.command}: {what}; rerun the same command to resume", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except OSError as err:
        if not isinstance(err, PermissionError) and err.errno not in _ENVIRONMENT_ERRNOS:
            return _bug(args.command)
        print(f"harness {args.command}: error: {err}", file=sys.stderr)  # names the file; the machine's to fix
        return 2
    except Exception:
        return _bug(args.command)


#: OS errors caused by the machine (full or read-only disk, quota), not by the harness
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


def _bug(command: str) -> int:
    """An error no input explains: keep the traceback (it is what a fix needs) and say so."""
    traceback.print_exc()
    print(f"harness {command}: internal error: this is a bug in crwbench, not a problem with your input. "
          "Please report it with the command line and the traceback above.", file=sys.stderr)
    return 1
