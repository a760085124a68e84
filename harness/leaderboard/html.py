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

from harness.leaderboard.cells import Column, reported_columns, reproduced_columns
from harness.leaderboard.document import GENERATED_PREFIX, Leaderboard, Plot
from harness.leaderboard.markdown import INTRO, settings_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " ▲"; } th[data-order="desc"]::after { content: " ▼"; }
tr.reported { background: #fafaf0; color: #555; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.generated, .settings { color: #666; font-size: 0.85em; }
.skipped li { font-family: monospace; }
div.scroll { overflow-x: auto; }
"""

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


def _cell(column: Column, row: pd.Series) -> str:
    text, number = column.cell(row)
    sort = text if number is None else repr(number)
    css = ' class="num"' if number is not None else ""
    return f'<td{css} data-sort="{escape(sort)}">{escape(text)}</td>'


def _links(row: pd.Series) -> str:
    links = [f'<a href="{escape(row["record"])}">record</a>']
    links += [f'<a href="{escape(path)}">strip {i + 1}</a>' for i, path in enumerate(row["visualizations"])]
    return f'<td data-sort="{escape(row["record"])}">{" ".join(links)}</td>'


def _table(frame: pd.DataFrame, columns: list[Column], with_links: bool) -> list[str]:
    headers = "".join(f"<th>{escape(c.header)}</th>" for c in columns) + ("<th>files</th>" if with_links else "")
    out = ['<div class="scroll"><table class="sortable">', f"<thead><tr>{headers}</tr></thead>", "<tbody>"]
    for _, row in frame.iterrows():
        cells = "".join(_cell(c, row) for c in columns) + (_links(row) if with_links else "")
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


def render_html(board: Leaderboard) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>crwbench leaderboard</title>',
        f"<style>{_STYLE}</style></head>",
        "<body>",
        "<h1>Leaderboard</h1>",
        f'<p class="generated">{escape(GENERATED_PREFIX + board.generated_at)}</p>',
        f"<p>{_inline(board.sources)}</p>",
        f"<p>{_inline(INTRO)}</p>",
        "<nav>" + " · ".join(f'<a href="#task-{escape(t)}">{escape(board.specs[t].label)}</a>' for t in board.tasks)
        + (' · <a href="#skipped">skipped records</a>' if board.skipped else "") + "</nav>",
    ]  # fmt: skip
    for task in board.tasks:
        spec = board.specs[task]
        out += [f'<section id="task-{escape(task)}">', f"<h2>{escape(spec.label)} (<code>{escape(task)}</code>)</h2>"]
        for group in board.task_groups(task):
            out += [
                f'<h3 id="{escape(group.key)}">Reproduced · protocol <code>{escape(group.protocol)}</code> · hash '
                f"<code>{escape(group.protocol_hash)}</code> · data {escape(group.data)}</h3>",
                f'<p class="settings">Settings: {escape(settings_text(group.settings) or "not recorded")}</p>',
                *_table(group.frame, reproduced_columns(spec), with_links=True),
                *(_figure(plot) for plot in board.task_plots(task, group.key)),
            ]
        out += [_figure(plot) for plot in board.task_plots(task)]
        reported = board.reported(task)
        if not reported.empty:
            out += ["<h3>Reported (published numbers, not ranked)</h3>"]
            out += _table(reported, reported_columns(spec), with_links=False)
        out.append("</section>")
    if board.skipped:
        out += ['<section id="skipped" class="skipped"><h2>Skipped records</h2>', "<ul>"]
        out += [f"<li>{escape(path)}: {escape(reason)}</li>" for path, reason in board.skipped]
        out += ["</ul></section>"]
    out += [f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(out)
