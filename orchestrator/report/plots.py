"""The plots of any sweep's report (orchestrator/report/core.py) and what every figure of a
report shares (the built-in study's figures, figures.py, draw with these): Matplotlib (Agg),
each returns a Figure, or a one-line reason it is absent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster heads or CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from divsweep.orchestrator.report.collect import AGGREGATED_STATUSES  # noqa: E402

DPI = 100  # keeps the base64-embedded report small


@dataclass(frozen=True)
class Figure:
    section: str
    path: Path | None  # None: the data for this figure is absent
    caption: str


def save(fig: plt.Figure, out: Path, section: str, caption: str) -> Figure:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return Figure(section, out, caption)


def errorbar(ax, df: pd.DataFrame, x: str, y: str, **kw) -> None:
    """Means with their intervals; cells without one (fewer than 3 seeds) get no bar."""
    df = df.sort_values(x)
    err = np.vstack([df[y] - df[f"{y}_lo"], df[f"{y}_hi"] - df[y]]).clip(min=0)
    ax.errorbar(df[x], df[y], yerr=np.nan_to_num(err), capsize=3, marker="o", **kw)


def style(ax, xlabel: str, ylabel: str, *, unit_y: bool = False, legend: int | None = 8) -> None:
    """The look every plot shares: labels, light grid, legend, and a 0–1 axis for accuracies."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if unit_y:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=legend)


def log_if_wide(ax, values: pd.Series) -> None:
    numeric = pd.to_numeric(values, errors="coerce").dropna()
    if len(numeric) and (numeric > 0).all() and numeric.max() / numeric.min() >= 10:
        ax.set_xscale("log")


def axis_plot(
    cells: pd.DataFrame,
    axis: str,
    others: list[str],
    y: str,
    label: str,
    out_dir: Path,
    max_lines: int,
) -> Figure:
    """A metric's mean over seeds (with intervals) against one axis, a line per point of the
    other axes (up to `max_lines`)."""
    section = f"axis-{axis}"
    numeric = pd.to_numeric(cells[axis], errors="coerce")
    if cells.empty or numeric.isna().any():
        return Figure(section, None, f"No plot: {axis} is not numeric (see the table).")
    groups = list(cells.groupby(others, dropna=False, sort=True)) if others else [((), cells)]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, group in groups[:max_lines]:
        name = ", ".join(f"{o}={v}" for o, v in zip(others, np.atleast_1d(key), strict=False))
        errorbar(ax, group.assign(**{axis: numeric[group.index]}), axis, y, label=name or None)
    log_if_wide(ax, numeric)
    style(ax, axis, f"{label} (mean over seeds)", legend=8 if others else None)
    shown = "" if len(groups) <= max_lines else f" (first {max_lines} of {len(groups)} lines)"
    caption = f"{label} vs {axis}: mean over seeds with 95% intervals where ≥ 3 seeds{shown}."
    return save(fig, out_dir / f"{section}.png", section, caption)


def pareto_plot(
    trials: pd.DataFrame, front: pd.DataFrame, cost: str, cost_label: str, y: str, label: str,
    out_dir: Path,
) -> Figure:  # fmt: skip
    """Every finished trial's metric against its cost, with the Pareto set joined up."""
    section = f"pareto-{cost}"
    done = trials[trials["status"].isin(AGGREGATED_STATUSES)].dropna(subset=[cost, y])
    if done.empty:
        return Figure(section, None, f"No plot: no finished trial has {cost_label}.")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.scatter(done[cost], done[y], alpha=0.5, label="trials")
    ax.step(front[cost], front[y], where="post", color="C3", marker="o", label="Pareto set")
    log_if_wide(ax, done[cost])
    style(ax, cost_label, label)
    caption = f"{label} vs {cost_label}, every finished trial; the Pareto set joined up."
    return save(fig, out_dir / f"{section}.png", section, caption)


def metric_curves(history: pd.DataFrame, labels: dict[str, str], metric: str, out_dir) -> Figure:
    """One metric's history (per reported step) for a few trials."""
    section = "learning-curves"
    if history.empty:
        return Figure(section, None, f"No curves: no trial logged {metric} yet.")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run_id, label in labels.items():
        run = history[history["run_id"] == run_id].sort_values("step")
        if len(run):
            ax.plot(run["step"], run["value"], marker=".", label=label)
    style(ax, "step", metric, legend=7)
    caption = (
        f"{metric} at each report of {len(labels)} trials (lowest seed, spread over the axes)."
    )
    return save(fig, out_dir / f"{section}.png", section, caption)
