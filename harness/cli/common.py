"""Flags shared by several subcommands, spelled the same everywhere (see CONVENTIONS.md)."""

from __future__ import annotations

import argparse


def add_common_data_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", help="folder holding the benchmark's own folders "
                      "(default: $HARNESS_DATA/<task>, then the shipped sample)")
    data.add_argument("--sequences", help="comma-separated sequences to use (JHMDB clips as class/clip)")
    data.add_argument("--limit", type=int, help="only the first N sequences (smoke runs; recorded and warned about)")


def split_list(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]
