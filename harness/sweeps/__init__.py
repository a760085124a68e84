"""Sweeps: a grid of ordinary ``harness run`` / ``harness train`` cells, run by an existing scheduler
(submitit: Slurm, local, debug), resumable, ending in one table and its plots.

``plan`` turns a spec (file or preset) into its cells; the CLI (``harness sweep``) and tests use it.
"""

from __future__ import annotations

from pathlib import Path

from harness.runs.record import REPO_ROOT
from harness.sweeps.grid import Cell, Layout, expand
from harness.sweeps.spec import SweepSpec, load_spec

SWEEPS_DIR = REPO_ROOT / "results" / "sweeps"


def plan(source: str, scale: str | None = None, out_dir: str | Path | None = None) -> tuple[SweepSpec, Layout, list[Cell]]:
    """The spec, the sweep folder (``results/sweeps/<name>/`` unless ``out_dir``) and every cell of the grid."""
    spec = load_spec(source, scale)
    layout = Layout(Path(out_dir).resolve() if out_dir else SWEEPS_DIR / spec.name)
    return spec, layout, expand(spec, layout.root)
