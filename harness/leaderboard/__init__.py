"""The leaderboard: tables, plots and reported-vs-reproduced comparisons built from run records.

``build_leaderboard`` reads ``record.json`` files (see docs/conventions.md §4) and ``results/reported.yaml``
and writes ``leaderboard.md``, ``leaderboard.csv``, a self-contained ``leaderboard.html`` and
``plots/*.svg``. Modules: collect (find + validate), reported (published numbers, protocol groups),
spec (task metrics), table (rows, dataset sections, groups, ranking), runtime (comparable runtimes),
summary (the at-a-glance answer, paired bootstrap), cells (columns), document (what renderers
receive), plots, markdown (Markdown + CSV), html, build (assemble + write). Dataset identity and
smoke runs come from :mod:`harness.data.identify`.
"""

from __future__ import annotations

from harness.leaderboard.build import BuildResult, build_leaderboard

__all__ = ["BuildResult", "build_leaderboard"]
