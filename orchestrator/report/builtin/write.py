"""write_report: MLflow sweep → report.html, report.md, figures/, summary tables (+ artifacts)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from divsweep import tracking
from divsweep.orchestrator import cost
from divsweep.orchestrator.report.builtin import figures as figs
from divsweep.orchestrator.report.builtin.aggregate import (
    AGGREGATED_STATUSES,
    aggregate,
    metric_counts,
    reference_slice,
)
from divsweep.orchestrator.report.builtin.findings import (
    REGIME_DEFINITIONS,
    generalization_metric,
    headline,
    paper_vs_ours,
    splits_note,
)
from divsweep.orchestrator.report.builtin.frontier import targets
from divsweep.orchestrator.report.builtin.pages import builtin_pages
from divsweep.orchestrator.report.builtin.transition import estimate_per_budget
from divsweep.orchestrator.report.collect import (
    ACCURACY_METRICS,
    Sweep,
    column,
    examples,
    histories,
)
from divsweep.orchestrator.report.core import publish
from divsweep.orchestrator.report.intervals import method_note
from divsweep.orchestrator.report.render import page_html, page_markdown
from divsweep.tracking import Status

AGGREGATED = [column(m) for m in ACCURACY_METRICS] + [
    "best_unseen_exact_match", "best_seen_exact_match", "step", "wall_time_s", "gpu_hours",
    "cpu_hours", "money", "effective_instructions",
]  # fmt: skip
OUTPUT_FILES = ("report.html", "report.md", "summary.parquet", "summary.csv", "trials.parquet",
                "trials.csv")  # fmt: skip
N_CURVES = 4


def _representative(sweep: Sweep) -> dict[str, str]:
    """Run id → label for a few learning curves: lowest seed, spread over n_instructions."""
    ref = reference_slice(sweep.trials[sweep.trials["status"] != Status.FAILED])
    if ref.empty:
        return {}
    ref = ref[ref["total_examples"] == ref["total_examples"].max()]
    ref = ref[ref["seed"] == ref["seed"].min()] if ref["seed"].notna().any() else ref
    ref = ref.sort_values("n_instructions").reset_index(drop=True)
    picks = sorted({round(i * (len(ref) - 1) / (N_CURVES - 1)) for i in range(N_CURVES)})
    return {
        ref.loc[i, "run_id"]: f"I={ref.loc[i, 'n_instructions']:g}, "
        f"S={ref.loc[i, 'examples_per_instruction']:g}"
        for i in picks
        if i < len(ref)
    }


def write_builtin_report(
    sweep: Sweep, tracking_uri: str, out_dir: Path, log_to_mlflow: bool = True
) -> Path:
    """The built-in study's report of `sweep` (read from MLflow by `collect`) into out_dir;
    returns the path of report.html."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    done = sweep.trials[sweep.trials["status"].isin(AGGREGATED_STATUSES)]
    per_example = examples(tracking_uri, done["run_id"])
    cells = aggregate(sweep.trials, AGGREGATED, per_example)
    metric = generalization_metric(reference_slice(cells))
    counts = metric_counts(per_example, metric)
    fits = [] if counts is None else estimate_per_budget(reference_slice(done), counts)
    curves = _representative(sweep)
    history = histories(tracking_uri, curves, ("unseen/exact_match", "seen/exact_match",
                                               "train/loss"))  # fmt: skip
    figures = {
        "transition": figs.transition_plot(cells, fits, fig_dir),
        "heatmap": figs.heatmap(cells, fig_dir),
        "frontier": figs.frontier_plot(cells, fig_dir),
        "long-tail": figs.long_tail_plot(cells, done, fig_dir),
        "share-rank": figs.share_rank_plot(sweep.trials, fig_dir),
        "no-op": figs.noop_plot(cells, fig_dir),
        "settings": figs.settings_plot(cells, fig_dir),
        "learning-curves": figs.learning_curves(history, curves, fig_dir),
    }
    for section, fig in figures.items():
        if fig.path is None:  # a figure left by an earlier report of this sweep is stale now
            (fig_dir / f"{section}.png").unlink(missing_ok=True)
    client = tracking.client(tracking_uri)
    parent = tracking.retrying(client.get_run, sweep.parent_run_id)
    spent = [cost.summary(sweep.trials, cost.prices_of(parent.data.params))]
    spent += filter(None, [cost.least_hours(cells, metric, targets(cells, metric))])
    note = (
        f"Means are over the seeds of finished trials only ({len(done)} of "
        f"{len(sweep.trials)}; {per_example['run_id'].nunique()} with per-example "
        f"predictions). {method_note(set(cells[f'{metric}_interval']))} "
        f"{REGIME_DEFINITIONS} {splits_note(sweep.selection)}"
    )
    pages = builtin_pages(sweep, headline(sweep, cells, fits, per_example), note, spent,
                          figures, paper_vs_ours(cells, fits))  # fmt: skip
    title = f"divsweep report: {sweep.name}"
    html_path = out_dir / "report.html"
    html_path.write_text(page_html(title, pages), encoding="utf-8")
    (out_dir / "report.md").write_text(page_markdown(title, pages, out_dir), encoding="utf-8")
    _write_table(cells, out_dir / "summary")
    _write_table(sweep.trials, out_dir / "trials")
    if log_to_mlflow:  # only our own outputs: out_dir may be a folder that holds other things
        files = [out_dir / name for name in OUTPUT_FILES]
        publish(sweep, tracking_uri, html_path, files, [f.path for f in figures.values() if f.path])
    return html_path


def _write_table(df: pd.DataFrame, stem: Path) -> None:
    df.to_parquet(stem.with_suffix(".parquet"), index=False)
    df.to_csv(stem.with_suffix(".csv"), index=False)
