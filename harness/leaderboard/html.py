"""Self-contained HTML leaderboard: inline CSS, a few lines of inline JS to sort tables, and the
plots embedded as base64 SVG data URIs. Nothing is fetched from the network, so the file can be
opened from disk, mailed, or archived with a paper.

Plots go in as ``<img src="data:image/svg+xml;base64,...">`` rather than inline ``<svg>``: inline
SVGs share one id namespace with the page, and matplotlib's clip-path ids could collide between
figures.
"""

from __future__ import annotations

import base64
import re
from html import escape

import pandas as pd

from harness.leaderboard.cells import (
    Column,
    is_missing,
    parameters_text,
    reported_columns,
    reproduced_columns,
    runtime_letters,
    smoke_columns,
)
from harness.leaderboard.document import GENERATED_PREFIX, INTRO, Leaderboard, Plot, anchor
from harness.leaderboard.markdown import SUMMARY_HEADERS, legends, runtime_classes, settings_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em 1.5em; color: #222; font-size: 15px; }
h1 { margin: 0.2em 0; font-size: 1.6em; } h2 { margin: 1em 0 0.3em; font-size: 1.3em; }
h3 { margin: 0.8em 0 0.2em; font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.45em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " ▲"; } th[data-order="desc"]::after { content: " ▼"; }
th.primary, td.primary { background: #fff7d6; font-weight: 600; }
table.summary td { white-space: normal; max-width: 26em; } table.summary th { cursor: default; }
tr.reported { background: #fafaf0; color: #555; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.method { position: relative; }
details.record { display: inline; } details.record summary { cursor: pointer; }
details.record div.detail { position: absolute; z-index: 5; left: 0; top: 1.6em; width: 34em; white-space: normal;
  background: #fff; border: 1px solid #888; box-shadow: 0 2px 8px #0003; padding: 0.5em 0.8em; font-weight: normal; }
div.detail dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.1em 0.8em; margin: 0; }
div.detail dt { color: #666; } div.detail dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 0.5em 0 1em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.generated, .settings, .legend, .intro { color: #555; font-size: 0.85em; margin: 0.2em 0; }
ul.groups { columns: 2; font-size: 0.8em; color: #555; margin: 0.2em 0; padding-left: 1.2em; }
.skipped li { font-family: monospace; }
div.scroll { max-width: 100%; }  /* no overflow clipping: the record pop-overs must show */
"""

_PRIMARY = ' class="primary"'
_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.order !== "asc";
    th.parentNode.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
    th.dataset.order = asc ? "asc" : "desc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].dataset.sort, y = b.cells[index].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn its Markdown `code` and **bold** spans into HTML (the intro is shared)."""
    html = re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(text))
    return re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", html)


def _detail(row: pd.Series) -> str:
    """Everything about a run that is not a table column, in a pop-over under its method name."""
    facts = [
        ("data", row.get("dataset")), ("why not ranked", row.get("smoke_reasons")),
        ("sequences", row.get("sequences")), ("data root", row.get("data_root")),
        ("backbone", row.get("backbone")), ("parameters", parameters_text(row.get("parameters"))),
        ("pretraining", row.get("pretraining")), ("checkpoint", row.get("checkpoint_sha256")),
        ("protocol", f"{row.get('protocol')} · {row.get('protocol_hash')}"),
        ("Δ vs published", row.get("delta_vs_reported")),
        ("ms/frame by stage", row.get("stages")), ("run time s", row.get("total_s")),
        ("peak RSS MiB", row.get("peak_rss_mib")), ("peak GPU MiB", row.get("peak_gpu_mib")),
        ("device", row.get("runtime_class")), ("load average", row.get("load_avg")),
        ("runtime code", "older than the current engine or stage timing" if row.get("older_code") is True else
         "current" if row.get("older_code") is False else "unknown"),
        ("commit", row.get("commit")), ("package", row.get("package_version")), ("date", row.get("date")),
    ]  # fmt: skip
    items = []
    for key, value in facts:
        if is_missing(value) or value in ("", None):
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        items.append(f"<dt>{escape(key)}</dt><dd>{escape(text)}</dd>")
    links = [f'<a href="{escape(row["record"])}">record.json</a>']
    links += [f'<a href="{escape(path)}">strip {i + 1}</a>' for i, path in enumerate(row["visualizations"])]
    items.append(f"<dt>files</dt><dd>{' '.join(links)}</dd>")
    return f'<div class="detail"><dl>{"".join(items)}</dl></div>'


def _cell(column: Column, row: pd.Series) -> str:
    text, number = column.cell(row)
    sort = text if number is None else repr(number)
    classes = (["num"] if number is not None else []) + (["primary"] if column.role == "primary" else [])
    if column.role == "method" and row.get("kind") == "reproduced":
        classes.append("method")
        body = f'<details class="record"><summary>{escape(text)}</summary>{_detail(row)}</details>'
    else:
        body = escape(text)
    css = f' class="{" ".join(classes)}"' if classes else ""
    return f'<td{css} data-sort="{escape(sort)}">{body}</td>'


def _table(frame: pd.DataFrame, columns: list[Column], css: str = "sortable") -> list[str]:
    headers = "".join(
        f"<th{_PRIMARY if c.role == 'primary' else ''}>{escape(c.header)}</th>" for c in columns
    )
    out = [f'<div class="scroll"><table class="{css}">', f"<thead><tr>{headers}</tr></thead>", "<tbody>"]
    for _, row in frame.iterrows():
        cells = "".join(_cell(c, row) for c in columns)
        ident = row["record"] if row["kind"] == "reproduced" else row["reported_id"]
        out.append(f'<tr class="{escape(row["kind"])}" data-id="{escape(str(ident))}">{cells}</tr>')
    out += ["</tbody>", "</table></div>"]
    return out


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.svg.encode("utf-8")).decode("ascii")
    return (
        f'<figure class="plot"><img alt="{escape(plot.title)}" src="data:image/svg+xml;base64,{data}">'
        f'<figcaption>{escape(plot.title)} (<a href="{escape(plot.path)}">SVG file</a>)</figcaption></figure>'
    )


def _summary(board: Leaderboard) -> list[str]:
    head = "".join(f"<th>{escape(h)}</th>" for h in SUMMARY_HEADERS)
    out = ['<section id="summary">', "<h2>At a glance</h2>", '<table class="summary">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for s in board.summaries:
        score = s.score + (f" <small>{escape(s.primary)}</small>" if s.score != "–" else "")
        cells = [f'<a href="#{escape(s.anchor)}">{escape(s.dataset)}</a>', escape(s.best), score, escape(s.sequences),
                 escape(s.lead), escape(s.published), escape(s.versus_published)]  # fmt: skip
        out.append("<tr>" + "".join(f"<td{_PRIMARY if i == 2 else ''}>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    out += ["</tbody></table>"]
    runtimes, groups = legends(board)
    if runtimes:
        out.append(f'<p class="legend">Runtime classes (each ms/frame column compares one class only): {escape("; ".join(runtimes))}</p>')
    out.append(f'<p class="intro">{_inline(INTRO)}</p>')
    if groups:
        out.append('<p class="legend">Protocol groups of published numbers (<code>results/reported.yaml</code>):</p>')
        out.append('<ul class="groups">' + "".join(f"<li>{escape(g)}</li>" for g in groups) + "</ul>")
    out.append("</section>")
    return out


def render_html(board: Leaderboard) -> str:
    repro = board.frame[board.frame["kind"] == "reproduced"]
    letters = runtime_letters(runtime_classes(repro))
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>crwbench leaderboard</title>",
        f"<style>{_STYLE}</style></head>",
        "<body>",
        "<h1>Leaderboard</h1>",
        f'<p class="generated">{escape(GENERATED_PREFIX + board.generated_at)} · {_inline(board.sources)}</p>',
        *_summary(board),
    ]  # fmt: skip
    for section, task in board.sections:
        spec = board.specs[task]
        out += [f'<section id="{escape(anchor(section))}">', f"<h2>{escape(section)}</h2>"]
        section_groups = board.section_groups(section)
        if not section_groups:
            smoke = int((board.smoke()["section"] == section).sum())
            note = f' ({smoke} smoke runs, <a href="#smoke">below</a>)' if smoke else ""
            out.append(f"<p>No ranked run{note}.</p>")
        for group in section_groups:
            out += [
                f'<h3 id="{escape(group.key)}">Protocol <code>{escape(group.protocol)}</code> · hash '
                f"<code>{escape(group.protocol_hash)}</code> · {escape(group.data)}</h3>",
                f'<p class="settings">Settings: {escape(settings_text(group.settings) or "not recorded")}</p>',
                *_table(group.frame, reproduced_columns(spec, runtime_classes(group.frame), letters)),
                *(_figure(plot) for plot in board.section_plots(section, group.key)),
            ]
        out += [_figure(plot) for plot in board.section_plots(section)]
        reported = board.reported(section)
        if not reported.empty:
            out += [f"<details><summary>Published numbers for {escape(section)} ({len(reported)}, not ranked)</summary>",
                    *_table(reported, reported_columns(spec)), "</details>"]  # fmt: skip
        out.append("</section>")
    smoke = board.smoke()
    if not smoke.empty:
        out += ['<section id="smoke">', "<h2>Smoke runs (not ranked)</h2>",
                f"<details><summary>{len(smoke)} runs on too little data to rank (reasons in the table)</summary>"]
        for task in dict.fromkeys(smoke["home_task"]):
            rows = smoke[smoke["home_task"] == task]
            out += _table(rows, smoke_columns(board.specs[task], runtime_classes(rows), letters))
        out += ["</details>", "</section>"]
    if board.sweeps:
        out += ['<section id="sweeps"><h2>Sweeps (not ranked)</h2>',
                "<p>Ablation reports of <code>harness sweep</code> (knobs varied on purpose):</p>", "<ul>"]
        out += [f'<li><a href="{escape(path)}">{escape(name)}</a></li>' for name, path in board.sweeps]
        out += ["</ul></section>"]
    if board.skipped:
        out += ['<section id="skipped" class="skipped"><h2>Skipped records</h2>', "<ul>"]
        out += [f"<li>{escape(path)}: {escape(reason)}</li>" for path, reason in board.skipped]
        out += ["</ul></section>"]
    out += [f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(out)
