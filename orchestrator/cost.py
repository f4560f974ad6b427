"""What a sweep cost: per trial, the resources Ray granted it times the time it held them,
summed over its attempts (retries, resumes); per sweep, the sum over its trials; money where
the spec gives prices (`cost: {gpu_hour: ..., cpu_hour: ...}`).

Measured in the driver, from Tune's trial events (`CostCallback`, orchestrator/tuner.py), so a
trial's process does nothing for it. Ray-free: the report reads the figures back from MLflow.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd

from divsweep import tracking
from divsweep.orchestrator.spec import Prices

# the trials table's columns (orchestrator/report/collect.py) -> the trial runs' metrics
COST_COLUMNS = {"gpu_hours": tracking.GPU_HOURS, "cpu_hours": tracking.CPU_HOURS,
                "money": tracking.MONEY}  # fmt: skip


@dataclass
class Held:
    """A trial's use so far: seconds held, and resources x hours, over `attempts` attempts."""

    held_s: float = 0.0
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    attempts: int = 0

    def add(self, seconds: float, resources: dict[str, float]) -> None:
        """One attempt's: `seconds` holding `resources` ({"CPU": 1.0, "GPU": 0.25})."""
        self.attempts += 1
        self.held_s += seconds
        self.gpu_hours += resources.get("GPU", 0.0) * seconds / 3600
        self.cpu_hours += resources.get("CPU", 0.0) * seconds / 3600

    def metrics(self, prices: Prices | None) -> dict[str, float]:
        figures = {
            tracking.HELD_S: self.held_s,
            tracking.GPU_HOURS: self.gpu_hours,
            tracking.CPU_HOURS: self.cpu_hours,
        }
        if prices is not None:
            figures[tracking.MONEY] = money(self.gpu_hours, self.cpu_hours, prices)
        return figures


def money(gpu_hours: float, cpu_hours: float, prices: Prices) -> float:
    return gpu_hours * prices.gpu_hour + cpu_hours * prices.cpu_hour


def totals(trials: pd.DataFrame) -> dict[str, float]:
    """The sweep's figures: the sum over its trials (one row each: the trials table)."""
    return {metric: float(trials[col].sum(min_count=1)) for col, metric in COST_COLUMNS.items()}


def log_totals(mlf, exp_id: str, parent_id: str) -> dict[str, float]:
    """Sum the trial runs' figures onto the parent run; returns the totals logged. (A trial
    with two runs counts once: its figures are cumulative, so the larger run's.)"""
    per_trial: dict[str, dict[str, float]] = {}
    for run in tracking.trial_runs(mlf, exp_id, parent_id):
        figures = {m: run.data.metrics[m] for m in COST_COLUMNS.values() if m in run.data.metrics}
        key = run.data.tags.get(tracking.KEY, run.info.run_id)
        kept = per_trial.setdefault(key, figures)
        if figures.get(tracking.CPU_HOURS, 0) > kept.get(tracking.CPU_HOURS, 0):
            per_trial[key] = figures
    logged = {
        m: sum(f[m] for f in per_trial.values() if m in f)
        for m in COST_COLUMNS.values()
        if any(m in f for f in per_trial.values())
    }
    if logged:
        tracking.retrying(mlf.log_batch, parent_id, metrics=_metrics(logged))
    return logged


def _metrics(values: dict[str, float]) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(name, value, now, 0) for name, value in values.items()]


def log_prices(mlf, parent_id: str, prices: Prices | None) -> None:
    if prices is None:
        return
    values = (prices.gpu_hour, prices.cpu_hour, prices.currency)
    for name, value in zip(tracking.PRICE_PARAMS, values, strict=True):
        tracking.retrying(mlf.log_param, parent_id, name, str(value))


def prices_of(params: dict[str, str]) -> Prices | None:
    """The prices a parent run was logged with (`log_prices`); None for an unpriced sweep."""
    if tracking.PRICE_PARAMS[0] not in params:
        return None
    gpu, cpu, currency = (params[name] for name in tracking.PRICE_PARAMS)
    return Prices(gpu_hour=float(gpu), cpu_hour=float(cpu), currency=currency)


def least_hours(cells: pd.DataFrame, metric: str, targets: tuple[float, ...]) -> str | None:
    """The report's line on the frontier in compute: per target, the cell (mean over seeds)
    with the fewest accelerator-hours (CPU-hours on CPU sweeps) whose `metric` reaches it."""
    axis = hours_axis(cells)
    if axis is None:
        return None
    parts = []
    for target in targets:
        cell = least_cost(cells, axis, target, metric)
        parts.append(
            f"≥ {target:g}: none reached"
            if cell is None
            else f"≥ {target:g}: {cell[axis]:.4g} (I={cell['n_instructions']:g}, "
            f"{cell['examples_per_instruction']:g} per instruction)"
        )
    words = metric.replace("_", " ")
    return f"Least {HOURS_WORDS[axis]} per trial reaching {words}: " + "; ".join(parts) + "."


def least_cost(cells: pd.DataFrame, cost: str, target: float, metric: str) -> pd.Series | None:
    """The cell with the least `cost` whose mean `metric` reaches `target` (None: none does)."""
    reached = cells[cells[metric] >= target].dropna(subset=[cost])
    return None if reached.empty else reached.loc[reached[cost].idxmin()]


def hours_axis(cells: pd.DataFrame) -> str | None:
    """The frontier's compute axis: accelerator-hours where the trials had accelerators, else
    CPU-hours; None for trials logged before divsweep measured either."""
    for column in ("gpu_hours", "cpu_hours"):
        if (cells[column] > 0).any():
            return column
    return None


HOURS_WORDS = {"gpu_hours": "GPU-hours", "cpu_hours": "CPU-hours"}


def summary(trials: pd.DataFrame, prices: Prices | None) -> str:
    """The report's line on what the sweep used and cost (its totals)."""
    sums = totals(trials)
    if math.isnan(sums[tracking.CPU_HOURS]):
        return "Cost: not measured (trials logged before divsweep recorded what they held)."
    line = (
        f"Cost: {sums[tracking.GPU_HOURS]:.4g} GPU-hours and {sums[tracking.CPU_HOURS]:.4g} "
        "CPU-hours (the resources Ray granted each trial × the time it held them, all its "
        "attempts)"
    )
    if prices is None:
        return line + "; no prices in the spec (`cost: {gpu_hour: ..., cpu_hour: ...}`)."
    return line + (
        f"; {sums[tracking.MONEY]:.4g} {prices.currency} at {prices.gpu_hour:g} "
        f"{prices.currency} per GPU-hour and {prices.cpu_hour:g} {prices.currency} per CPU-hour."
    )
