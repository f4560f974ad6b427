"""The report of any sweep, whatever its module logs: the headline metric against each swept
axis (means over seeds with their intervals), the Pareto set of that metric against what it
cost, learning curves, every trial; and, where the sweep has a number-of-groups axis, where the
headline crosses fixed levels (the least-data frontier).

It reads only what every sweep has: the trials' params and metrics in MLflow, and the parent
run's spec (its axes) and headline tag. The built-in study's report (write.py) adds what only
its trainer records (per-example predictions, rewrite-rule diagnostics, the paper's numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from divsweep import tracking
from divsweep.orchestrator import cost
from divsweep.orchestrator.report import plots
from divsweep.orchestrator.report.collect import (
    AGGREGATED_STATUSES,
    COMPUTE_SETTINGS,
    Sweep,
    axis_column,
    column,
    histories,
    preemption_line,
    setting_order,
)
from divsweep.orchestrator.report.intervals import (
    CONFIDENCE,
    MIN_SEEDS,
    NONE,
    SEEDS_ONLY,
    Interval,
    method_note,
)
from divsweep.orchestrator.report.render import (
    Page,
    page_html,
    page_markdown,
    partial_banner,
    status_counts,
)
from divsweep.orchestrator.report.threshold import budget_exponent, compute_arms, frontier_sentence
from divsweep.tracking import Status

ARTIFACT_DIR = "report"
N_CURVES = 6
MAX_LINES = 8  # lines per axis figure; more combinations of the other axes are left to tables
GROUPS = "n_instructions"  # the number-of-groups axis (instructions, tasks, rules)
BUDGET = "total_examples"  # the training-set size axis (`data.budget`)
LEVELS = (0.5,)  # fixed headline levels the frontier reads, besides fractions of the best
COSTS = {"total_examples": "training examples", "gpu_hours": "GPU-hours",
         "cpu_hours": "CPU-hours", "wall_time_s": "wall seconds"}  # fmt: skip


@dataclass(frozen=True)
class Headline:
    metric: str
    mode: str  # max or min

    @property
    def column(self) -> str:
        return column(self.metric)

    @classmethod
    def of(cls, sweep: Sweep) -> Headline:
        """The parent's headline tag (`metric (mode)`), else its selection metric."""
        text = sweep.headline or sweep.selection
        if not text:
            raise ValueError(f"sweep {sweep.name} names no headline or selection metric")
        return cls(*tracking.read_metric_tag(text))


def varied_axes(sweep: Sweep) -> list[str]:
    """The trials table's columns of the axes that vary, seeds aside (they are replicates)."""
    columns = [axis_column(path) for path in sweep.axes if path not in ("seed", "data.seed")]
    done = sweep.trials[sweep.trials["status"].isin(AGGREGATED_STATUSES)]
    return [c for c in dict.fromkeys(columns) if c in done and done[c].nunique(dropna=False) > 1]


def seed_interval(values: np.ndarray) -> Interval:
    """Student-t interval of the mean over seeds (the replication unit), with at least
    MIN_SEEDS of them; unbounded, since a module's metric need not be a proportion."""
    if len(values) < MIN_SEEDS:
        return NONE
    half = stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1) * stats.sem(values)
    return Interval(float(values.mean() - half), float(values.mean() + half), SEEDS_ONLY)


def cells(trials: pd.DataFrame, axes: list[str], metric: str) -> pd.DataFrame:
    """One row per point of the axes: the metric's mean over seeds, its interval (over seeds,
    with at least MIN_SEEDS of them), and the seeds' values."""
    done = trials[trials["status"].isin(AGGREGATED_STATUSES) & trials[metric].notna()]
    rows = []
    keys = axes or [lambda _: 0]
    for key, group in done.groupby(keys, dropna=False, sort=False):
        values = group[metric].to_numpy(dtype=float)
        interval = seed_interval(values)
        point = dict(zip(axes, key if isinstance(key, tuple) else (key,), strict=False))
        rows.append(
            point
            | {
                metric: float(values.mean()),
                f"{metric}_lo": interval.low,
                f"{metric}_hi": interval.high,
                "method": interval.method,
                "n_seeds": len(values),
                "seeds": ", ".join(f"{v:.3f}" for v in values),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty or not axes:
        return table
    for axis in axes:  # params are logged as text: numbers sort and plot as numbers
        numeric = pd.to_numeric(table[axis], errors="coerce")
        if numeric.notna().all():
            table[axis] = numeric
    order = table[axes].apply(lambda col: col.map(setting_order) if col.dtype == object else col)
    return table.loc[order.apply(tuple, axis=1).sort_values().index].reset_index(drop=True)


def pareto_set(trials: pd.DataFrame, cost: str, metric: str, mode: str) -> pd.DataFrame:
    """The trials no other trial beats on both: at most its cost and a better metric."""
    done = trials[trials["status"].isin(AGGREGATED_STATUSES)].dropna(subset=[cost, metric])
    better = done[metric] if mode == "max" else -done[metric]
    ranked = done.assign(_better=better).sort_values([cost, "_better"], ascending=[True, False])
    best, keep = -math.inf, []
    for index, value in ranked["_better"].items():
        if value > best:
            keep.append(index)
            best = value
    return ranked.loc[keep].drop(columns="_better").reset_index(drop=True)


def least_groups(table: pd.DataFrame, metric: str, level: float, others: list[str]):
    """Per point of the `others` axes (a budget among them): the fewest groups whose mean
    reaches `level` (NaN: none does)."""
    rows = []
    for key, group in table.groupby(others, dropna=False, sort=True) if others else [((), table)]:
        reached = group[group[metric] >= level]
        rows.append(
            dict(zip(others, np.atleast_1d(key), strict=False))
            | {"level": level, GROUPS: reached[GROUPS].min() if len(reached) else math.nan}
        )
    return pd.DataFrame(rows)


def write_core_report(
    sweep: Sweep, tracking_uri: str, out_dir: Path, log_to_mlflow: bool = True
) -> Path:
    """Build the report of a sweep (read from MLflow by `collect`) into out_dir; returns
    report.html's path."""
    out_dir = Path(out_dir)
    headline = Headline.of(sweep)
    metric = headline.column
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    axes = varied_axes(sweep)
    table = cells(sweep.trials, axes, metric)
    parent = tracking.retrying(tracking.client(tracking_uri).get_run, sweep.parent_run_id)
    spent = cost.summary(sweep.trials, cost.prices_of(parent.data.params))
    pages: list[Page] = [summary_page(sweep, headline, table, axes, spent)]
    for axis in axes:
        pages.append(axis_page(table, axes, axis, headline, fig_dir))
    if GROUPS in axes:
        pages.append(frontier_page(table, headline, [a for a in axes if a != GROUPS]))
    if GROUPS in axes and BUDGET in axes:
        pages += filter(None, [threshold_page(sweep.trials, headline, axes)])
    for paid, label in COSTS.items():
        if sweep.trials[paid].nunique() > 1:  # a cost every trial paid alike orders nothing
            pages.append(pareto_page(sweep.trials, paid, label, headline, axes, fig_dir))
    pages.append(curves_page(sweep, headline, axes, tracking_uri, fig_dir))
    pages.append(trials_page(sweep.trials, axes, sweep.metrics))
    title = f"divsweep report: {sweep.name}"
    html_path = out_dir / "report.html"
    html_path.write_text(page_html(title, pages), encoding="utf-8")
    (out_dir / "report.md").write_text(page_markdown(title, pages, out_dir), encoding="utf-8")
    table.to_parquet(out_dir / "summary.parquet", index=False)
    sweep.trials.to_parquet(out_dir / "trials.parquet", index=False)
    sweep.trials.to_csv(out_dir / "trials.csv", index=False)
    if log_to_mlflow:
        names = ("report.html", "report.md", "summary.parquet", "trials.parquet", "trials.csv")
        files = [out_dir / name for name in names]
        publish(sweep, tracking_uri, html_path, files, [f for p in pages for f in p.figure_paths])
    return html_path


def publish(
    sweep: Sweep, tracking_uri: str, html_path: Path, files: list[Path], figures: list[Path]
) -> None:
    """A report's files as artifacts of the sweep's parent run (under `report/`), and the
    tags `divsweep status` reads: where the latest report is and what it holds."""
    client = tracking.client(tracking_uri)
    uploads = [(path, ARTIFACT_DIR) for path in files]
    uploads += [(path, f"{ARTIFACT_DIR}/figures") for path in figures]
    for path, folder in uploads:
        tracking.retrying(client.log_artifact, sweep.parent_run_id, str(path), folder)
    total = "?" if sweep.n_trials is None else sweep.n_trials
    state = (
        f"partial: {sweep.n_done} of {total} trials"
        if sweep.partial
        else f"final: {len(sweep.trials)} trials"
    )
    tags = {tracking.REPORT: str(html_path.resolve()), tracking.REPORT_STATE: state}
    for name, value in tags.items():
        tracking.retrying(client.set_tag, sweep.parent_run_id, name, value)


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def summary_page(
    sweep: Sweep, headline: Headline, table: pd.DataFrame, axes: list[str], spent: str
) -> Page:
    grid = f" of {sweep.n_trials} planned" if sweep.n_trials is not None else ""
    lines = [f"{len(sweep.trials)} trials{grid}: {status_counts(sweep.trials)}."]
    lines.append(
        f"Headline: {headline.metric} ({headline.mode}); selection: {sweep.selection}; "
        f"axes: {', '.join(axes) or 'none'} (seeds are replicates)."
    )
    if not table.empty:
        best = table.loc[table[headline.column].idxmax() if headline.mode == "max"
                         else table[headline.column].idxmin()]  # fmt: skip
        where = ", ".join(f"{a}={best[a]}" for a in axes) or "the one point"
        lines.append(
            f"Best mean {headline.metric}: {best[headline.column]:.3f} at {where} "
            f"({int(best['n_seeds'])} seeds: {best['seeds']})."
        )
    lines.append(method_note(set(table["method"])) if not table.empty else "No finished trial.")
    lines.append(spent)
    lines += filter(None, [preemption_line(sweep.trials)])
    return Page("summary", "Sweep", lines, banner=partial_banner(sweep))


def axis_page(
    table: pd.DataFrame, axes: list[str], axis: str, headline: Headline, fig_dir: Path
) -> Page:
    metric = headline.column
    others = [a for a in axes if a != axis]
    figure = plots.axis_plot(table, axis, others, metric, headline.metric, fig_dir, MAX_LINES)
    columns = {a: a for a in axes} | {
        metric: f"mean {headline.metric}",
        f"{metric}_lo": "95% low",
        f"{metric}_hi": "95% high",
        "n_seeds": "seeds",
        "seeds": "per seed",
    }
    return Page(f"axis-{axis}", f"{headline.metric} vs {axis}", [], figure, table, columns)


def frontier_page(table: pd.DataFrame, headline: Headline, others: list[str]) -> Page:
    metric = headline.column
    best = table[metric].max()
    levels = sorted({*LEVELS, *(round(f * best, 3) for f in (0.5, 0.9))})
    frontier = pd.concat([least_groups(table, metric, level, others) for level in levels])
    lines = [
        f"The fewest groups ({GROUPS}) whose mean {headline.metric} reaches each level, per "
        f"point of the other axes; blank: no point of the grid reaches it. Levels: "
        f"{', '.join(map(str, levels))} (0.5 and half / nine tenths of the best mean, "
        f"{best:.3f})."
    ]
    columns = {c: c for c in frontier.columns}
    return Page("frontier", "Least-data frontier", lines, None, frontier, columns)


def threshold_page(trials: pd.DataFrame, headline: Headline, axes: list[str]) -> Page | None:
    """Whether the number of groups or the examples per group sets the threshold: I*(N) ∝ N^β
    over the budgets (threshold.py), per compute arm and per point of the axes beyond groups,
    budget and compute. Only for a headline that is a proportion to maximise (an accuracy)."""
    metric = headline.column
    done = trials[trials["status"].isin(AGGREGATED_STATUSES)].dropna(subset=[metric])
    if headline.mode != "max" or done.empty or not done[metric].between(0, 1).all():
        return None
    others = [a for a in axes if a not in (GROUPS, BUDGET, *COMPUTE_SETTINGS)]
    points = done.groupby(others, dropna=False) if others else [((), done)]
    lines = []
    for key, point in points:
        where = ", ".join(f"{a}={v}" for a, v in zip(others, np.atleast_1d(key), strict=True))
        for arm, group in compute_arms(point):
            label = "; ".join(filter(None, [arm, where])) or "all trials"
            lines.append(frontier_sentence(budget_exponent(group, metric), label))
    return Page("threshold", "Threshold vs budget", lines)


def pareto_page(
    trials: pd.DataFrame, cost: str, label: str, headline: Headline, axes: list[str], fig_dir
) -> Page:
    front = pareto_set(trials, cost, headline.column, headline.mode)
    figure = plots.pareto_plot(trials, front, cost, label, headline.column, headline.metric,
                              fig_dir)  # fmt: skip
    columns = {"trial_key": "trial", **{a: a for a in axes}, "seed": "seed", cost: label,
               headline.column: headline.metric}  # fmt: skip
    lines = [f"Trials no other trial beats on both fewer {label} and a better {headline.metric}."]
    return Page(f"pareto-{cost}", f"{headline.metric} vs {label}", lines, figure, front, columns)


def curves_page(sweep: Sweep, headline: Headline, axes: list[str], uri: str, fig_dir) -> Page:
    done = sweep.trials[sweep.trials["status"] != Status.FAILED]
    lowest_seed = done[done["seed"] == done["seed"].min()] if done["seed"].notna().any() else done
    ordered = lowest_seed.sort_values(axes) if axes else lowest_seed
    picks = ordered.iloc[np.unique(np.linspace(0, len(ordered) - 1, N_CURVES).round().astype(int))]
    labels = {
        row["run_id"]: ", ".join(f"{a}={row[a]}" for a in axes) or row["trial_key"]
        for _, row in (picks if len(ordered) else ordered).iterrows()
    }
    history = histories(uri, labels, (headline.metric,))
    figure = plots.metric_curves(history, labels, headline.metric, fig_dir)
    return Page("learning-curves", "Learning curves", [], figure)


def trials_page(trials: pd.DataFrame, axes: list[str], metrics: tuple[str, ...]) -> Page:
    columns = {"trial_key": "trial", "status": "status", **{a: a for a in axes}, "seed": "seed"}
    columns |= {column(m): m for m in sorted(metrics)}
    columns |= {"wall_time_s": "wall s", "gpu_hours": "GPU-h", "cpu_hours": "CPU-h",
                "money": "cost", "preemptions": "preempted", "node": "node"}  # fmt: skip
    return Page("trials", "All trials", [], None, trials, columns, sortable=True)
