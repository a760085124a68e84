"""The sweep's results: one pandas table of every cell (CSV + Markdown) and its ablation plots.

The table is built from the cells' run records only (never from logs). The CSV keeps the records'
fractions at full precision; the Markdown shows percentages, as every table of the harness does.
Plots: the primary metric against each swept knob, one line per method (and per value of the other
swept knobs); for a checkpoint series, against the training step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.io import atomic_write_text
from harness.sweeps.grid import Cell, Layout
from harness.sweeps.spec import SweepSpec
from harness.sweeps.state import cell_status

TIMING_KEYS = ("features_ms_per_frame", "propagation_ms_per_frame")


def _axis_columns(spec: SweepSpec, table: pd.DataFrame) -> list[str]:
    series = "step" in table.columns  # a checkpoint series is plotted against its training step
    columns = [k for k in spec.grid if k in table.columns and not (series and k == "checkpoint")]
    if series:
        columns.append("step")
    if "method" not in columns and "method" in table.columns:
        columns.insert(0, "method")
    return columns


def gather(spec: SweepSpec, cells: list[Cell], layout: Layout) -> pd.DataFrame:
    """One row per cell in grid order: its knobs, status, metrics (fractions) and ms/frame timings."""
    rows = []
    for cell in cells:
        status, _ = cell_status(layout, cell)
        row: dict[str, Any] = {"cell": cell.id, **cell.params, "status": status}
        if status == "done":
            record = json.loads(cell.record.read_text())
            row.update(record.get("metrics", {}))
            timing = record.get("timing", {})
            row.update({k: timing.get(k) for k in TIMING_KEYS})
            if timing.get("feature_cache") is not None:  # records before this key cannot tell
                row["features_cached"] = timing["feature_cache"].get("hits", 0) > 0
            row["frames"] = timing.get("frames")
            row["protocol_hash"] = record.get("protocol", {}).get("hash")
            row["record"] = str(cell.record.relative_to(layout.root))
        elif status == "failed":
            row["record"] = f"failed: see {layout.log_path(cell.id).relative_to(layout.root)}"
        rows.append(row)
    table = pd.DataFrame(rows)
    if "checkpoint" in table.columns:
        table["checkpoint"] = [Path(c).name if isinstance(c, str) else "default" for c in table["checkpoint"]]
    if "frames" in table.columns:
        table["frames"] = table["frames"].astype("Int64")  # failed cells leave gaps; counts stay integers
    return table


def primary_metric(table: pd.DataFrame, task: str) -> str | None:
    """The task's primary metric (the registry's), when the table has that column."""
    from harness.registry import get_task

    name = get_task(task).metric
    return name if name in table.columns else None


def _markdown(spec: SweepSpec, table: pd.DataFrame, metric_columns: list[str], plots: list[Path]) -> str:
    shown = table.copy()
    for col in metric_columns:
        shown[col] = [None if pd.isna(v) else f"{100 * v:.1f}" for v in shown[col]]
    for col in TIMING_KEYS:
        if col in shown.columns:
            shown[col] = [None if pd.isna(v) else f"{v:.1f}" for v in shown[col]]
    shown = shown.rename(columns={"features_ms_per_frame": "features ms/frame",
                                  "propagation_ms_per_frame": "propagation ms/frame"})
    counts = table["status"].value_counts().to_dict()
    lines = [f"# Sweep `{spec.name}`" + (f" (scale `{spec.scale}`)" if spec.scale else ""), ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [f"Cells: {len(table)} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}). "
              f"Task `{spec.task}`, protocol family `{spec.protocol}`"
              + (f", data `{spec.data_root}`" if spec.data_root else ", data: default root")
              + (f", sequences {', '.join(spec.sequences)}" if spec.sequences else "")
              + (f", first {spec.limit} sequence(s) only" if spec.limit else "") + ".",
              "Metrics in percent (the CSV beside this file holds the records' fractions); timings in ms per frame "
              "as the records state them (a cell that read cached features, `features_cached` True, shows the time to "
              "load them).", "",
              _markdown_table(shown), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _markdown_table(table: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _plot(table: pd.DataFrame, knob: str, others: list[str], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table[metric].notna()]
    fig, ax = plt.subplots(figsize=(6, 4))
    numeric = pd.api.types.is_numeric_dtype(done[knob])
    order = list(dict.fromkeys(table[knob]))
    for key, group in done.groupby(others, sort=False, dropna=False) if others else [((), done)]:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{o.split('.')[-1]}={v}" if o != "method" else str(v) for o, v in zip(others, key, strict=True))
        group = group.sort_values(knob) if numeric else group.assign(_x=[order.index(v) for v in group[knob]]).sort_values("_x")
        x = group[knob] if numeric else group["_x"]
        ax.plot(x, 100 * group[metric], marker="o", label=label or None)
    if not numeric:
        ax.set_xticks(range(len(order)), [str(v) for v in order])
    ax.set_xlabel("training step" if knob == "step" else knob)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with open(path, "w") as handle:  # small SVG, rewritten whole on each report
        fig.savefig(handle, format="svg")
    plt.close(fig)


def write_report(spec: SweepSpec, cells: list[Cell], layout: Layout) -> Path:
    """Write ``report.csv``, ``report.md`` and ``plot-<knob>.svg``; returns the Markdown file's path."""
    table = gather(spec, cells, layout)
    layout.root.mkdir(parents=True, exist_ok=True)
    metric_columns = [c for c in table.columns if c in _metric_keys()]
    atomic_write_text(layout.root / "report.csv", table.to_csv(index=False))
    metric = primary_metric(table, spec.task)
    plots: list[Path] = []
    axes = _axis_columns(spec, table)
    if metric is not None:
        knobs = [a for a in axes if a != "method" and table[a].nunique(dropna=False) > 1]
        for knob in knobs:
            others = [a for a in axes if a != knob and (a == "method" or table[a].nunique(dropna=False) > 1)]
            path = layout.root / f"plot-{knob.split('.')[-1]}.svg"
            _plot(table, knob, others, metric, path, f"{spec.name}: {metric} vs {knob.split('.')[-1]}")
            plots.append(path)
    report = layout.root / "report.md"
    atomic_write_text(report, _markdown(spec, table, metric_columns, plots))
    return report


def _metric_keys() -> set[str]:
    """Every metric a registered task reports (the registry's): the columns shown as percentages."""
    from harness.registry import get_task, list_tasks

    return {key for task in list_tasks() for key in get_task(task).metric_keys}
