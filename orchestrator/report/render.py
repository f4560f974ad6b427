"""A report's pages as report.html (one self-contained file, figures inlined) and report.md
(figures linked): every report, the core's and the built-in study's, is a list of Pages."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from divsweep.orchestrator.report.collect import STATUSES, Sweep
from divsweep.orchestrator.report.plots import Figure


def partial_banner(sweep: Sweep) -> str | None:
    """What a report of a sweep still running says first (None once it has ended)."""
    if not sweep.partial:
        return None
    total = "?" if sweep.n_trials is None else sweep.n_trials
    return f"PARTIAL: sweep still running — {sweep.n_done} of {total} trials done."


def status_counts(trials: pd.DataFrame) -> str:
    """`3 finished, 1 failed`: the trials per status, in STATUSES order ('none yet' if none)."""
    counts = trials["status"].value_counts()
    return ", ".join(f"{int(counts[s])} {s}" for s in STATUSES if counts.get(s, 0)) or "none yet"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3f}" if abs(value) < 10 and value != int(value) else f"{value:g}"
    return str(value)


# ---------------------------------------------------------------- HTML

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} section{margin:2em 0} figure{margin:0} figcaption{color:#555;font-size:.9em}
img{max-width:100%;border:1px solid #ddd} .banner{background:#fff3cd;border:1px solid #e0b800;
padding:.6em 1em;font-weight:bold} .absent{color:#777;font-style:italic}
table{border-collapse:collapse;font-size:.85em} th,td{border:1px solid #ccc;padding:.2em .5em}
th{background:#f0f0f0;cursor:pointer;user-select:none} td.num{text-align:right}
"""
# Errors are counted from the first script so a broken figure or script is visible to a test
# that reads the DOM back (headless Chromium's --dump-dom).
_HEAD_JS = """
window.reportErrors=0;
window.addEventListener('error',function(){window.reportErrors++;},true);
"""
_BODY_JS = """
function sortTable(th){
  var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex;
  var asc=th.dataset.sort!=='asc';th.dataset.sort=asc?'asc':'desc';
  var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){
    var x=a.cells[col].textContent,y=b.cells[col].textContent,nx=parseFloat(x),ny=parseFloat(y);
    var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});
}
window.addEventListener('load',function(){
  var imgs=document.images,ok=0;
  for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}
  document.body.dataset.imagesLoaded=ok;document.body.dataset.imagesTotal=imgs.length;
  document.body.dataset.errors=window.reportErrors;
});
"""


def _html_table(df: pd.DataFrame, columns: dict[str, str], sortable: bool) -> str:
    cols = [c for c in columns if c in df.columns]
    click = ' onclick="sortTable(this)"' if sortable else ""
    head = "".join(f"<th{click}>{html.escape(columns[c])}</th>" for c in cols)
    body = []
    for _, row in df.iterrows():
        cells = "".join(
            f'<td class="num">{_cell(row[c])}</td>'
            if isinstance(row[c], (int, float))
            else f"<td>{html.escape(_cell(row[c]))}</td>"
            for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_figure(fig: Figure) -> str:
    if fig.path is None:
        return f'<p class="absent">{html.escape(fig.caption)}</p>'
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(fig.section)}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )


# ---------------------------------------------------------------- Markdown


def _md_table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    cols = [c for c in columns if c in df.columns]
    lines = ["| " + " | ".join(columns[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = (_cell(row[c]).replace("|", "\\|") for c in cols)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- pages of any report


@dataclass(frozen=True)
class Page:
    """One section of a report: its anchor and title, sentences, and optionally a figure and a
    table (with the columns it shows, by column name -> header). `banner`, shown above the
    rest and highlighted, is for what a reader must not miss (a sweep still running)."""

    id: str
    title: str
    lines: list[str]
    figure: Figure | None = None
    table: pd.DataFrame | None = None
    columns: dict[str, str] | None = None
    sortable: bool = False
    banner: str | None = None

    @property
    def figure_paths(self) -> list[Path]:
        return [self.figure.path] if self.figure is not None and self.figure.path else []


def page_html(title: str, pages: list[Page]) -> str:
    sections = []
    for page in pages:
        body = "".join(f"<p>{html.escape(line)}</p>" for line in page.lines)
        if page.banner:
            body = f'<p class="banner">{html.escape(page.banner)}</p>{body}'
        if page.figure is not None:
            body += _html_figure(page.figure)
        if page.table is not None:
            body += _html_table(page.table, page.columns, page.sortable)
        heading = html.escape(page.title)
        sections.append(f'<section id="{page.id}"><h2>{heading}</h2>{body}</section>')
    title = html.escape(title)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style><script>{_HEAD_JS}</script></head><body>"
        f"<h1>{title}</h1>{''.join(sections)}<script>{_BODY_JS}</script></body></html>"
    )


def page_markdown(title: str, pages: list[Page], out_dir: Path) -> str:
    sections = []
    for page in pages:
        parts = ([f"> **{page.banner}**"] if page.banner else []) + list(page.lines)
        if page.figure is not None:
            fig = page.figure
            parts.append(
                f"_{fig.caption}_"
                if fig.path is None
                else f"![{fig.section}]({fig.path.relative_to(out_dir).as_posix()})\n\n"
                f"{fig.caption}"
            )
        if page.table is not None:
            parts.append(_md_table(page.table, page.columns))
        sections.append(f'<a id="{page.id}"></a>\n## {page.title}\n\n' + "\n\n".join(parts))
    return f"# {title}\n\n" + "\n\n".join(sections) + "\n"
