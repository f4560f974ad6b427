"""Mean over seeds per grid cell, with an interval whose method its label states
(intervals.py), and the seeds themselves."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from divsweep.orchestrator.report.collect import (
    AGGREGATED_STATUSES,
    COMPUTE_SETTINGS,
    setting_order,
    swept_settings,
)
from divsweep.orchestrator.report.intervals import (
    NO_INTERVAL,
    WITHIN_TRIAL,
    cell_interval,
    count_text,
    rule_counts,
    trial_interval,
)
from divsweep.trainer import predictions

# One grid cell = every resolved axis except the seed: these, and the sweep's other settings.
CELL = ["distribution", "alpha", "p_pattern_present", "total_examples", "n_instructions",
        "examples_per_instruction"]  # fmt: skip


def metric_counts(examples: pd.DataFrame | None, metric: str) -> pd.DataFrame | None:
    """Per trial and rule (`run_id`, `rule_id`, `n`, `k`) of a metric, or None where no
    per-example predictions back it."""
    rows = None if examples is None or examples.empty else predictions.for_metric(examples, metric)
    return None if rows is None or rows.empty else rule_counts(rows)


def _seeds_text(group: pd.DataFrame, metric: str, counts: pd.DataFrame | None) -> str:
    """Each seed's value, with its raw count where it is 0 or 1 and its within-trial interval
    where predictions back it (`0.00 (0/412) [0.00–0.01]`)."""
    parts = []
    for run_id, value in zip(group["run_id"], group[metric], strict=True):
        if not np.isfinite(value):
            continue
        own = None if counts is None else counts[counts["run_id"] == run_id]
        backed = own is not None and len(own)
        ci = trial_interval(own) if backed else None
        count = f" ({count_text(own['k'].sum(), own['n'].sum())})" if backed else ""
        parts.append(
            f"{value:.2f}"
            + (count if value in (0, 1) else "")
            + (f" [{ci.low:.2f}–{ci.high:.2f}]" if ci else "")
        )
    return ", ".join(parts)


def aggregate(
    trials: pd.DataFrame, metrics: list[str], examples: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per grid cell: `n_seeds`, and for each metric `<metric>` (mean over seeds),
    `<metric>_lo` / `<metric>_hi` (NaN where there is no interval), `<metric>_interval` (what it
    covers), `<metric>_count` (correct/examples over the seeds where the mean is 0 or 1 and
    per-example predictions back it, else empty) and `<metric>_seeds` (each seed's value, with
    its within-trial interval where per-example predictions back it)."""
    done = trials[trials["status"].isin(AGGREGATED_STATUSES)]
    suffixes = ("", "_lo", "_hi", "_interval", "_count", "_seeds")
    cell = [*CELL, *swept_settings(trials)]
    columns = [*cell, "n_seeds"] + [f"{m}{s}" for m in metrics for s in suffixes]
    if done.empty:
        return pd.DataFrame(columns=columns)
    counts = {m: metric_counts(examples, m) for m in metrics}
    rows = []
    # dropna=False: uniform trials have alpha NaN and must still form cells.
    for key, group in done.groupby(cell, dropna=False, sort=True):
        row = dict(zip(cell, key, strict=True))
        row["n_seeds"] = int(group["seed"].nunique(dropna=False))
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            mine = counts[metric]
            mine = None if mine is None else mine[mine["run_id"].isin(group["run_id"])]
            ci = cell_interval(values, mine)
            row[metric] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            row[f"{metric}_lo"], row[f"{metric}_hi"] = ci.low, ci.high
            backed = ci.method == NO_INTERVAL and mine is not None and len(mine)
            row[f"{metric}_interval"] = WITHIN_TRIAL if backed else ci.method
            edge = mine is not None and len(mine) and row[metric] in (0, 1)
            row[f"{metric}_count"] = count_text(mine["k"].sum(), mine["n"].sum()) if edge else ""
            row[f"{metric}_seeds"] = _seeds_text(group, metric, mine)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def reference_slice(table: pd.DataFrame, keep: Collection[str] = ()) -> pd.DataFrame:
    """Uniform-distribution rows at the most common no-op setting and the first of the most
    common values of every other swept setting (but those in `keep`): the paper's main grid.

    The other rows (power-law, other p_pattern_present, other settings) belong to their own
    sections; mixing them into the transition or frontier would compare different tasks.
    """
    uniform = table[table["distribution"] == "uniform"]
    for name in ["p_pattern_present", *swept_settings(table)]:
        values = uniform[name]
        if name not in keep and values.notna().any():
            uniform = uniform[values == reference_value(values)]
    return uniform


def reference_value(values: pd.Series) -> object:
    """The value of a setting (the column `values.name`) the reference slice holds: the most
    common, the first in its natural order among ties (the last for COMPUTE_SETTINGS)."""
    counts = values.value_counts()
    common = counts[counts == counts.max()].index
    pick = max if values.name in COMPUTE_SETTINGS else min
    return pick(common, key=setting_order)
