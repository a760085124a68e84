"""The leaderboard: tables, plots and reported-vs-reproduced comparisons built from run records.

``build_leaderboard`` reads ``record.json`` files (see CONVENTIONS.md) and ``results/reported.yaml``
and writes ``leaderboard.md``, ``leaderboard.csv``, a self-contained ``leaderboard.html`` and
``plots/*.svg``. Modules: records (find + validate), reported (published numbers), spec (task
metrics), table (frames, grouping, ranking), cells (column formatting), document (what renderers
receive), plots, markdown (Markdown + CSV), html, build (assemble + write).
"""

from __future__ import annotations

from harness.leaderboard.build import BuildResult, build_leaderboard

__all__ = ["BuildResult", "build_leaderboard"]
