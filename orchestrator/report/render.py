"""report.html (one self-contained file, figures inlined) and report.md (figures linked)."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from divsweep.orchestrator.report.collect import swept_settings
from divsweep.orchestrator.report.plots import Figure
from divsweep.tracking import Status

# Stable anchors: the integration test checks that a report holds every one of them.
SECTION_IDS = (
    "summary",
    "findings",
    "transition",
    "heatmap",
    "frontier",
    "long-tail",
    "share-rank",
    "no-op",
    "settings",
    "learning-curves",
    "paper-vs-ours",
    "trials",
    "failed-trials",
)
SECTION_TITLES = {
    "summary": "Sweep",
    "findings": "Headline findings",
    "transition": "Transition: unseen accuracy vs number of instructions",
    "heatmap": "Instructions × examples per instruction",
    "frontier": "Trade-off frontier",
    "long-tail": "Long-tail robustness (uniform vs power law)",
    "share-rank": "Instruction share vs rank (power laws)",
    "no-op": "Accuracy vs no-op ratio",
    "settings": "Accuracy vs number of instructions, per swept setting",
    "learning-curves": "Learning curves",
    "paper-vs-ours": "Paper vs ours",
    "trials": "All trials",
    "failed-trials": "Failed and early-stopped trials",
}
TRIAL_COLUMNS = {
    "trial_key": "trial",
    "status": "status",
    "n_instructions": "instructions",
    "examples_per_instruction": "examples / instr.",
    "total_examples": "total examples",
    "distribution": "distribution",
    "alpha": "alpha",
    "p_pattern_present": "p(pattern)",
    "seed": "seed",
    "unseen_exact_match": "unseen EM (test rules)",
    "unseen_val_exact_match": "unseen EM (val rules)",
    "seen_exact_match": "seen EM",
    "best_unseen_exact_match": "best unseen EM (test)",
    "step": "steps",
    "wall_time_s": "wall s",
    "gpu_hours": "GPU-h",
    "cpu_hours": "CPU-h",
    "money": "cost",
    "node": "node",
}


@dataclass(frozen=True)
class ReportContent:
    sweep: str
    status_counts: dict[str, int]
    n_trials: int | None
    partial: bool
    n_done: int
    findings: list[str]
    cost: list[str]  # what the sweep used and cost, and the least compute per target
    figures: dict[str, Figure]  # section id → figure
    paper_rows: list[tuple[str, str, str]]
    trials: pd.DataFrame
    aggregation_note: str


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3f}" if abs(value) < 10 and value != int(value) else f"{value:g}"
    return str(value)


def _trial_columns(trials: pd.DataFrame) -> dict[str, str]:
    """TRIAL_COLUMNS with the sweep's other swept settings after the seed."""
    items = list(TRIAL_COLUMNS.items())
    at = list(TRIAL_COLUMNS).index("seed") + 1
    return dict(items[:at] + [(name, name) for name in swept_settings(trials)] + items[at:])


def _problem_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"].isin([Status.FAILED, Status.STOPPED])]


def _status_line(c: ReportContent) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in c.status_counts.items() if n)
    total = f" of {c.n_trials} in the grid" if c.n_trials is not None else ""
    return f"{len(c.trials)} trials{total}: {counts or 'none yet'}."


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


def render_html(c: ReportContent) -> str:
    parts: dict[str, str] = {}
    banner = (
        f'<p class="banner">PARTIAL: sweep still running — {c.n_done} of '
        f"{c.n_trials if c.n_trials is not None else '?'} trials done.</p>"
        if c.partial
        else ""
    )
    parts["summary"] = f"{banner}<p>{html.escape(_status_line(c))}</p>" + "".join(
        f"<p>{html.escape(line)}</p>" for line in c.cost
    )
    items = "".join(f"<li>{html.escape(s)}</li>" for s in c.findings)
    parts["findings"] = f"<ul>{items}</ul><p>{html.escape(c.aggregation_note)}</p>"
    for section, fig in c.figures.items():
        parts[section] = _html_figure(fig)
    paper = pd.DataFrame(c.paper_rows, columns=["quantity", "paper", "ours"])
    parts["paper-vs-ours"] = _html_table(paper, {k: k for k in paper.columns}, sortable=False)
    columns = _trial_columns(c.trials)
    parts["trials"] = _html_table(c.trials, columns, sortable=True) + (
        "<p>Click a column header to sort.</p>"
    )
    problems = _problem_trials(c.trials)
    parts["failed-trials"] = (
        _html_table(problems, columns, sortable=True)
        if len(problems)
        else '<p class="absent">No failed or early-stopped trials.</p>'
    )
    sections = "".join(
        f'<section id="{sid}"><h2>{html.escape(SECTION_TITLES[sid])}</h2>{parts[sid]}</section>'
        for sid in SECTION_IDS
    )
    title = html.escape(f"divsweep report: {c.sweep}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style><script>{_HEAD_JS}</script></head><body>"
        f"<h1>{title}</h1>{sections}<script>{_BODY_JS}</script></body></html>"
    )


# ---------------------------------------------------------------- Markdown


def _md_table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    cols = [c for c in columns if c in df.columns]
    lines = ["| " + " | ".join(columns[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = (_cell(row[c]).replace("|", "\\|") for c in cols)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(c: ReportContent, out_dir: Path) -> str:
    parts: dict[str, str] = {}
    banner = (
        f"> **PARTIAL: sweep still running — {c.n_done} of "
        f"{c.n_trials if c.n_trials is not None else '?'} trials done.**\n\n"
        if c.partial
        else ""
    )
    parts["summary"] = "\n\n".join([banner + _status_line(c), *c.cost])
    parts["findings"] = "\n".join(f"- {s}" for s in c.findings) + f"\n\n{c.aggregation_note}"
    for section, fig in c.figures.items():
        parts[section] = (
            f"_{fig.caption}_"
            if fig.path is None
            else f"![{fig.section}]({fig.path.relative_to(out_dir).as_posix()})\n\n{fig.caption}"
        )
    paper = pd.DataFrame(c.paper_rows, columns=["quantity", "paper", "ours"])
    parts["paper-vs-ours"] = _md_table(paper, {k: k for k in paper.columns})
    columns = _trial_columns(c.trials)
    parts["trials"] = _md_table(c.trials, columns)
    problems = _problem_trials(c.trials)
    parts["failed-trials"] = (
        _md_table(problems, columns) if len(problems) else "No failed or early-stopped trials."
    )
    body = "\n\n".join(
        f'<a id="{sid}"></a>\n## {SECTION_TITLES[sid]}\n\n{parts[sid]}' for sid in SECTION_IDS
    )
    return f"# divsweep report: {c.sweep}\n\n{body}\n"


# ---------------------------------------------------------------- pages of any report


@dataclass(frozen=True)
class Page:
    """One section of a report: its anchor and title, sentences, and optionally a figure and a
    table (with the columns it shows, by column name -> header)."""

    id: str
    title: str
    lines: list[str]
    figure: Figure | None = None
    table: pd.DataFrame | None = None
    columns: dict[str, str] | None = None
    sortable: bool = False

    @property
    def figure_paths(self) -> list[Path]:
        return [self.figure.path] if self.figure is not None and self.figure.path else []


def page_html(title: str, pages: list[Page]) -> str:
    sections = []
    for page in pages:
        body = "".join(f"<p>{html.escape(line)}</p>" for line in page.lines)
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
        parts = list(page.lines)
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
