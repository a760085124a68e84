"""Flags shared by several subcommands, spelled the same everywhere (see docs/conventions.md §2)."""

from __future__ import annotations

import argparse

from harness.errors import HarnessError


def add_common_data_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", help="folder holding the benchmark's own folders "
                      "(default: $HARNESS_DATA/<task>; the shipped sample when HARNESS_DATA is unset)")
    data.add_argument("--sequences", help="comma-separated sequences to use (JHMDB clips as class/clip)")
    data.add_argument("--limit", type=positive_int, metavar="N",
                      help="only the first N sequences (smoke runs; recorded and warned about)")


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (``--limit``, ``--max-steps``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_sequences(value: str | None) -> list[str] | None:
    """``--sequences a,b`` → names; None when not given. Naming nothing (``,``) or a name twice is refused:
    the first used to run every sequence, the second to run one twice."""
    if value is None:
        return None
    names = [item.strip() for item in value.split(",") if item.strip()]
    if not names:
        raise HarnessError(f"--sequences {value!r} names no sequence (leave the flag out to use the whole split)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HarnessError(f"--sequences names {', '.join(twice)} more than once")
    return names

