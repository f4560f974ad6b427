"""The built-in study's report as pages: one per section, every section in every report (data
or not: a section without its data says so in one line), in the order of SECTION_IDS."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from divsweep.orchestrator.report.collect import Sweep, swept_settings
from divsweep.orchestrator.report.plots import Figure
from divsweep.orchestrator.report.render import Page, partial_banner, status_counts
from divsweep.tracking import Status

# Stable anchors: the integration test checks that a report holds every one of them.
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
SECTION_IDS = tuple(SECTION_TITLES)
FIGURE_SECTIONS = ("transition", "heatmap", "frontier", "long-tail", "share-rank", "no-op",
                   "settings", "learning-curves")  # fmt: skip
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


def builtin_pages(
    sweep: Sweep,
    findings: list[str],
    aggregation_note: str,
    cost: list[str],
    figures: dict[str, Figure],
    paper_rows: list[tuple[str, str, str]],
) -> list[Page]:
    """Every section of the report, in SECTION_IDS order; `figures` keyed by FIGURE_SECTIONS."""
    if set(figures) != set(FIGURE_SECTIONS):
        raise ValueError(f"figures for {sorted(figures)}, the report has {FIGURE_SECTIONS}")
    grid = f" of {sweep.n_trials} in the grid" if sweep.n_trials is not None else ""
    status = f"{len(sweep.trials)} trials{grid}: {status_counts(sweep.trials)}."
    columns = trial_columns(sweep.trials)
    problems = sweep.trials[sweep.trials["status"].isin([Status.FAILED, Status.STOPPED])]
    paper = pd.DataFrame(paper_rows, columns=["quantity", "paper", "ours"])
    return [
        _page("summary", [status, *cost], banner=partial_banner(sweep)),
        _page("findings", [*findings, aggregation_note]),
        *(_page(section, figure=figures[section]) for section in FIGURE_SECTIONS),
        _page("paper-vs-ours", table=paper, columns={k: k for k in paper.columns}),
        _page(
            "trials",
            ["Click a column header to sort."],
            table=sweep.trials,
            columns=columns,
            sortable=True,
        ),
        _page("failed-trials", table=problems, columns=columns, sortable=True)
        if len(problems)
        else _page("failed-trials", ["No failed or early-stopped trials."]),
    ]


def _page(sid: str, lines: Sequence[str] = (), **parts) -> Page:
    return Page(sid, SECTION_TITLES[sid], list(lines), **parts)


def trial_columns(trials: pd.DataFrame) -> dict[str, str]:
    """TRIAL_COLUMNS with the sweep's other swept settings after the seed."""
    items = list(TRIAL_COLUMNS.items())
    at = list(TRIAL_COLUMNS).index("seed") + 1
    return dict(items[:at] + [(name, name) for name in swept_settings(trials)] + items[at:])
