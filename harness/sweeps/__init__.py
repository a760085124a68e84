"""Sweeps: a grid of ordinary ``harness run`` / ``harness train`` cells, run by an existing scheduler
(submitit: Slurm, local, debug), resumable, ending in one table and its plots.

``plan`` turns a spec (file or preset) into its cells; the CLI (``harness sweep``) and tests use it.
"""

from __future__ import annotations

from pathlib import Path

from harness.resources import results_dir
from harness.sweeps.grid import Cell, Layout, expand
from harness.sweeps.spec import SweepSpec, load_spec
from harness.sweeps.validate import check_settings

#: sweep folders go here, under the results root (``--results-dir``, ``$HARNESS_RESULTS``, ``./results``)
SWEEPS_DIR = "sweeps"


def plan(source: str, scale: str | None = None, out_dir: str | Path | None = None,
         results_root: str | Path | None = None) -> tuple[SweepSpec, Layout, list[Cell]]:
    """The spec, its sweep folder and every cell of the grid; settings no cell could run with are refused here.

    The folder is ``out_dir``, else ``<results root>/sweeps/<name>/`` with the root chosen as
    ``harness run`` chooses it (:func:`harness.resources.results_dir`).
    """
    spec = load_spec(source, scale)
    check_settings(spec)
    root = Path(out_dir).resolve() if out_dir else results_dir(results_root) / SWEEPS_DIR / spec.name
    layout = Layout(root)
    return spec, layout, expand(spec, layout.root)
