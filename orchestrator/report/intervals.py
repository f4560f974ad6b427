"""Per-cell intervals whose method and coverage are what their label says.

A cell's estimate is the mean over its seeds of each trial's accuracy (correct / examples).
Repeating the study would change it for two reasons: the seeds (initialisation, data order, the
rules drawn) and the evaluation rules, which every trial of a sweep shares (one eval set per
sweep). The design is crossed, seeds × rules, so the spread of the trial means alone misses the
rule part. The interval adds the two variance components, each estimated from its own margin
(seed: the trial means; rule: each rule's accuracy averaged over the seeds, as a ratio
estimator), which counts their interaction twice and so errs wide, and uses Student-t with
Welch-Satterthwaite degrees of freedom, which matters with 3 seeds. Coverage is measured by
simulation in tests/test_report_intervals.py.

With fewer than MIN_SEEDS seeds the seed component cannot be estimated: the report shows the
seeds' values, each with its within-trial (rules resampled) interval, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
MIN_SEEDS = 3  # with 2, the seed variance has 1 degree of freedom: t = 12.7

SEEDS_AND_RULES = "seeds and evaluation rules"
SEEDS_ONLY = "seeds only (no per-example predictions: evaluation-rule variation not included)"
WITHIN_TRIAL = "within one trial (evaluation rules only)"
NO_INTERVAL = "none"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # what varies in it: SEEDS_AND_RULES, SEEDS_ONLY, WITHIN_TRIAL or NO_INTERVAL


NONE = Interval(np.nan, np.nan, NO_INTERVAL)


def rule_counts(examples: pd.DataFrame) -> pd.DataFrame:
    """Per trial and evaluation rule: examples `n` and correct `k`, from per-example rows
    (`run_id`, `rule_id`, `correct`)."""
    grouped = examples.groupby(["run_id", "rule_id"], sort=True)["correct"]
    return grouped.agg(n="size", k="sum").reset_index()


def _rule_variance(counts: pd.DataFrame) -> tuple[float, int]:
    """Variance of a ratio estimator (sum k / sum n) from resampling rules, with the rules'
    accuracies averaged over the trials in `counts`; and the number of rules."""
    per_rule = counts.groupby("rule_id").agg(n=("n", "mean"), acc=("acc", "mean"))
    n, acc, r = per_rule["n"].to_numpy(), per_rule["acc"].to_numpy(), len(per_rule)
    if r < 2 or n.sum() == 0:
        return np.nan, r
    theta = (n * acc).sum() / n.sum()
    z = n * (acc - theta)
    return float(r / (r - 1) * (z**2).sum() / n.sum() ** 2), r


def _t_interval(mean: float, parts: list[tuple[float, int]], method: str) -> Interval:
    """mean ± t·sqrt(sum of variances); parts are (variance, degrees of freedom)."""
    total = sum(v for v, _ in parts)
    if not np.isfinite(total):
        return NONE
    if total == 0:
        return Interval(mean, mean, method)
    df = total**2 / sum(v**2 / d for v, d in parts if v > 0)  # Welch-Satterthwaite
    half = stats.t.ppf((1 + CONFIDENCE) / 2, df) * np.sqrt(total)
    return Interval(float(max(mean - half, 0.0)), float(min(mean + half, 1.0)), method)


def cell_interval(trial_acc: np.ndarray, counts: pd.DataFrame | None = None) -> Interval:
    """Interval for the mean of `trial_acc` (one accuracy per seed). `counts` (`run_id`,
    `rule_id`, `n`, `k` of the same trials) adds the evaluation-rule component."""
    trial_acc = np.asarray(trial_acc, dtype=float)
    trial_acc = trial_acc[np.isfinite(trial_acc)]
    s = trial_acc.size
    if s < MIN_SEEDS:
        return NONE
    parts = [(float(trial_acc.var(ddof=1) / s), s - 1)]
    if counts is None or counts.empty:
        return _t_interval(float(trial_acc.mean()), parts, SEEDS_ONLY)
    v_rule, r = _rule_variance(counts.assign(acc=counts["k"] / counts["n"].clip(lower=1)))
    parts.append((v_rule, r - 1))
    return _t_interval(float(trial_acc.mean()), parts, SEEDS_AND_RULES)


def trial_interval(counts: pd.DataFrame) -> Interval:
    """One trial's accuracy with its evaluation rules resampled: what the same model would
    score on another draw of rules. `counts`: that trial's rows (`rule_id`, `n`, `k`)."""
    if counts.empty or counts["n"].sum() == 0:
        return NONE
    acc = counts["k"].sum() / counts["n"].sum()
    v_rule, r = _rule_variance(counts.assign(acc=counts["k"] / counts["n"].clip(lower=1)))
    return _t_interval(float(acc), [(v_rule, r - 1)], WITHIN_TRIAL)


def method_note(methods: set[str]) -> str:
    """What the intervals of a report are, for the sentence under its tables."""
    level = f"{CONFIDENCE:.0%}"
    notes = {
        SEEDS_AND_RULES: (
            f"cells with ≥ {MIN_SEEDS} seeds: {level} interval of the mean over seeds, covering "
            "seed-to-seed and evaluation-rule variation (Student-t, Welch-Satterthwaite "
            "degrees of freedom; coverage measured by simulation)"
        ),
        SEEDS_ONLY: (
            f"cells with ≥ {MIN_SEEDS} seeds but no per-example predictions: {level} Student-t "
            "interval over the seeds; the shared evaluation rules' variation is not included"
        ),
        WITHIN_TRIAL: (
            f"cells with fewer than {MIN_SEEDS} seeds: no interval for the cell; each seed's "
            f"value is listed with its {level} within-trial interval (evaluation rules "
            "resampled; seed-to-seed variation not captured)"
        ),
        NO_INTERVAL: (
            f"cells with fewer than {MIN_SEEDS} seeds and no per-example predictions: the "
            "seeds' values, no interval"
        ),
    }
    return "Intervals: " + "; ".join(notes[m] for m in notes if m in methods) + "."
