"""Build the leaderboard from run records and published numbers, and write its files.

This is the only module that touches the output folder. Every file is written atomically, and
everything except the generated-at line is a pure function of the records and ``reported.yaml``,
so regenerating from unchanged inputs leaves the committed files unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.io import atomic_write_text
from harness.leaderboard.collect import Run, Skipped, load_runs
from harness.leaderboard.document import Leaderboard, Plot, anchor
from harness.leaderboard.html import render_html
from harness.leaderboard.markdown import render_csv, render_markdown
from harness.leaderboard.plots import per_sequence, score_vs_runtime
from harness.leaderboard.reported import ProtocolGroup, ReportedEntry, load_protocol_groups, load_reported
from harness.leaderboard.spec import task_spec
from harness.leaderboard.summary import Summary, best_published, section_summary
from harness.leaderboard.table import build_frame, groups, metric_columns, sections

PLOTS_DIR = "plots"
#: sweep reports live beside the leaderboard, never among the ranked runs (``harness sweep --report``)
SWEEPS_DIR = "sweeps"


@dataclass(frozen=True)
class BuildResult:
    """What was written, and which record files were skipped (with reasons)."""

    written: list[Path]
    runs: int
    skipped: list[Skipped]


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _per_sequence(runs: list[Run], out_dir: Path) -> dict[str, dict[str, Any]]:
    return {_rel(run.path, out_dir): run.record.per_sequence or {} for run in runs}


def _references(board: Leaderboard, section: str, task: str, rows: pd.DataFrame) -> list[tuple[str, float]]:
    """Best published number per protocol family present, only when every run covers the full split."""
    if rows.empty or not rows["full_split"].astype(bool).all():
        return []
    spec, reported, out = board.specs[task], board.reported(section), []
    for family in sorted(set(rows["protocol"])):
        best = best_published(reported, spec.primary, family, spec.higher_is_better(spec.primary))
        if best is not None:
            out.append((f"{best['method']} {best[spec.primary]:.1f} (group {best['protocol_group']})", float(best[spec.primary])))
    return out


def _plots(board: Leaderboard, runs: list[Run], out_dir: Path) -> dict[str, list[Plot]]:
    by_record = _per_sequence(runs, out_dir)
    plots: dict[str, list[Plot]] = {}
    for section, task in board.sections:
        spec, found = board.specs[task], []
        section_groups = board.section_groups(section)
        ranked = pd.concat([g.frame for g in section_groups]) if section_groups else pd.DataFrame()
        for klass in sorted(set(ranked["runtime_class"])) if not ranked.empty else []:
            rows = ranked[ranked["runtime_class"] == klass]
            svg = score_vs_runtime(spec, klass, rows, _references(board, section, task, rows))
            if svg is not None:
                digest = hashlib.sha256(f"{section}|{klass}".encode()).hexdigest()[:8]
                found.append(Plot(f"{PLOTS_DIR}/{anchor(section)}-runtime-{digest}.svg",
                                  f"{section}: {spec.primary} vs ms/frame on {klass}", svg))
        for group in section_groups:
            svg = per_sequence(spec, group, [by_record[r] for r in group.frame["record"]])
            if svg is not None:
                title = f"{section}: per-sequence scores, protocol {group.protocol} {group.protocol_hash}"
                found.append(Plot(f"{PLOTS_DIR}/{group.key}-per-sequence.svg", title, svg, group.key))
        plots[section] = found
    return plots


def _summaries(board: Leaderboard, runs: list[Run], out_dir: Path) -> list[Summary]:
    by_record = _per_sequence(runs, out_dir)
    smoke = board.smoke()
    out = []
    for section, task in board.sections:
        groups_ = board.section_groups(section)
        ranked = pd.concat([g.frame for g in groups_]) if groups_ else board.frame.iloc[0:0]
        out.append(section_summary(section, anchor(section), board.specs[task].primary, ranked,
                                   int((smoke["section"] == section).sum()), board.reported(section), by_record))
    return out


def assemble(
    runs: list[Run],
    skipped: list[Skipped],
    reported: list[ReportedEntry],
    out_dir: Path,
    generated_at: str,
    sources: str,
    protocol_groups: list[ProtocolGroup] | None = None,
) -> Leaderboard:
    """The complete leaderboard in memory (frames, groups, summary, plots); nothing is written."""
    frame = build_frame(runs, reported, out_dir)
    section_list = sections(frame)
    specs = {}
    for task in {task for _, task in section_list} | {run.task for run in runs}:
        keys = {k for r in runs if r.task == task for k in r.record.metrics}
        specs[task] = task_spec(task, keys | {k for e in reported if e.task == task for k in e.metrics})
    board = Leaderboard(
        frame=frame,
        groups=groups(frame, runs),
        sections=section_list,
        specs=specs,
        metric_keys=metric_columns(runs, reported),
        skipped=[(_rel(s.path, out_dir), s.reason) for s in skipped],
        generated_at=generated_at,
        sources=sources,
        protocol_groups=protocol_groups if protocol_groups is not None else _entry_groups(reported),
    )
    board.summaries = _summaries(board, runs, out_dir)
    board.plots = _plots(board, runs, out_dir)
    return board


def sweep_reports(out_dir: Path) -> list[tuple[str, str]]:
    """Sweep reports under ``<out_dir>/sweeps/<name>/report.md``: linked from the page, never ranked
    (a sweep varies protocol knobs on purpose, so its cells are not comparable runs)."""
    return [(report.parent.name, _rel(report, out_dir))
            for report in sorted((out_dir / SWEEPS_DIR).glob("*/report.md"))]


def _entry_groups(reported: list[ReportedEntry]) -> list[ProtocolGroup]:
    return list({entry.group.name: entry.group for entry in reported}.values())


def build_leaderboard(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    reported_path: str | Path | None = None,
    generated_at: str | None = None,
) -> BuildResult:
    """Read records under ``paths`` and write leaderboard.{md,csv,html} and plots/ into ``out_dir``.

    Raises :class:`HarnessError` when not a single record could be read: an empty leaderboard
    would look like "no runs" when the real cause is a wrong path or a broken runner.
    """
    out_dir = Path(out_dir).resolve()
    paths = list(paths)
    runs, skipped = load_runs(paths)
    if not runs:
        detail = "".join(f"\n  {s.path}: {s.reason}" for s in skipped)
        raise HarnessError(
            f"no usable run record under {', '.join(map(str, paths))} "
            f"({len(skipped)} record file(s) skipped){detail}"
        )
    reported = load_reported(reported_path) if reported_path is not None else []
    where = f" from `{_rel(Path(reported_path).resolve(), out_dir)}`" if reported_path is not None else ""
    sources = (
        f"Built by `harness leaderboard` from {len(runs)} run record(s)"
        + (f" ({len(skipped)} skipped, listed at the end)" if skipped else "")
        + f" and {len(reported)} published result(s){where}."
    )
    stamp = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    protocol_groups = load_protocol_groups(reported_path) if reported_path is not None else []
    board = assemble(runs, skipped, reported, out_dir, stamp, sources, protocol_groups)
    board.sweeps = sweep_reports(out_dir)
    written = []
    plot_paths = {out_dir / plot.path for plots in board.plots.values() for plot in plots}
    for plots in board.plots.values():
        for plot in plots:
            atomic_write_text(out_dir / plot.path, plot.svg)
            written.append(out_dir / plot.path)
    # Figures of groups that no longer exist would otherwise linger next to the current ones.
    for stale in sorted((out_dir / PLOTS_DIR).glob("*.svg")):
        if stale not in plot_paths:
            stale.unlink()
    for name, text in (
        ("leaderboard.md", render_markdown(board)),
        ("leaderboard.csv", render_csv(board)),
        ("leaderboard.html", render_html(board)),
    ):
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    return BuildResult(written=written, runs=len(runs), skipped=skipped)
