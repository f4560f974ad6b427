"""Per-cell intervals whose method and coverage are what their label says.

A cell's estimate is the mean over its seeds of each trial's accuracy (correct / examples).
Repeating the study would change it for two reasons: the seeds (initialisation, data order, the
rules drawn) and the evaluation rules, which every trial of a sweep shares (one eval set per
sweep). The design is crossed, seeds × rules, so the spread of the trial means alone misses the
rule part. The interval adds the two variance components, each estimated from its own margin
(seed: the trial means; rule: each rule's accuracy averaged over the seeds, as a ratio
estimator), which counts their interaction twice and so errs wide, with Welch-Satterthwaite
degrees of freedom, which matter with 3 seeds. It is a Clopper-Pearson interval at the
effective number of examples that variance implies (Korn & Graubard): a symmetric mean ± t·se
has zero width at a count of 0 (a third of cells near p = 0.001 with 5 inputs per rule) and
spills past 0 and 1 near them. Coverage is measured by simulation in
tests/test_report_intervals.py, at the edges and with bimodal seeds.

No interval can cover a seed outcome that none of a cell's seeds reached: where seeds fall into
two modes and all of a cell's seeds into one, it misses (BIMODAL_NOTE).

With fewer than MIN_SEEDS seeds the seed component cannot be estimated (with 2 seeds the
interval covers 0.89 of the time even when seeds are unimodal): the report shows the seeds'
values, each with its within-trial (rules resampled) interval, and says so.
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
BIMODAL_NOTE = (
    "no interval covers a seed outcome none of the cell's seeds reached: where seeds fall into "
    "two modes, a third of them near 0.5 and the rest near 0.17, all 3 seeds of a cell land in "
    "one mode a third of the time, and the interval then misses (coverage measured 0.66 in that "
    "case, 0.95 for seeds that vary around one value); read each seed's value, and add seeds "
    "where they disagree"
)


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


def _rule_variance(n: np.ndarray, acc: np.ndarray) -> tuple[float, int]:
    """Variance of a ratio estimator (sum k / sum n) from resampling rules, with the rules'
    examples `n` and accuracies `acc` (trials × rules) averaged over the trials; and the
    number of rules."""
    n, acc, r = n.mean(axis=0), acc.mean(axis=0), n.shape[1]
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
    half = stats.t.ppf((1 + CONFIDENCE) / 2, _welch_df(parts)) * np.sqrt(total)
    return Interval(float(max(mean - half, 0.0)), float(min(mean + half, 1.0)), method)


def _welch_df(parts: list[tuple[float, int]]) -> float:
    total = sum(v for v, _ in parts)
    return total**2 / sum(v**2 / d for v, d in parts if v > 0)  # Welch-Satterthwaite


def _beta_interval(mean: float, parts: list[tuple[float, int]], n: float, method: str) -> Interval:
    """Clopper-Pearson at the effective number of examples (Korn & Graubard 1998): the n whose
    binomial variance equals the estimated one, shrunk by (z / t)^2 for the variance's own
    degrees of freedom. The interval is asymmetric near 0 and 1 and never of zero width. At a
    count of 0 or all (no variance to estimate) it takes the examples as they are: there the
    seeds' and rules' spread is second order in p (few examples right, each a rare event),
    so the count itself is what varies."""
    total = sum(v for v, _ in parts)
    if not np.isfinite(total) or n == 0:
        return NONE
    if total > 0 and 0 < mean < 1:
        shrink = (stats.norm.ppf((1 + CONFIDENCE) / 2) / stats.t.ppf((1 + CONFIDENCE) / 2,
                  _welch_df(parts))) ** 2  # fmt: skip
        n = min(mean * (1 - mean) / total, n) * shrink
    x, tail = mean * n, (1 - CONFIDENCE) / 2
    low = 0.0 if x <= 0 else stats.beta.ppf(tail, x, n - x + 1)
    high = 1.0 if x >= n else stats.beta.ppf(1 - tail, x + 1, n - x)
    return Interval(float(low), float(high), method)


def crossed_interval(n: np.ndarray, k: np.ndarray) -> Interval:
    """Interval for the mean over seeds of each seed's accuracy, from `k` of `n` examples right
    per seed (rows) and evaluation rule (columns). Fewer than MIN_SEEDS seeds: none."""
    s = n.shape[0]
    if s < MIN_SEEDS:
        return NONE
    acc = k.sum(axis=1) / n.sum(axis=1)
    parts = [(float(acc.var(ddof=1) / s), s - 1)]
    v_rule, r = _rule_variance(n, k / np.maximum(n, 1))
    parts.append((v_rule, r - 1))
    return _beta_interval(float(acc.mean()), parts, float(n.sum()), SEEDS_AND_RULES)


def _matrix(counts: pd.DataFrame, values: str) -> np.ndarray:
    """trials × rules of one column of `counts`."""
    wide = counts.pivot_table(index="run_id", columns="rule_id", values=values, fill_value=0)
    return wide.to_numpy(dtype=float)


def cell_interval(trial_acc: np.ndarray, counts: pd.DataFrame | None = None) -> Interval:
    """Interval for the mean of `trial_acc` (one accuracy per seed). `counts` (`run_id`,
    `rule_id`, `n`, `k` of the same trials) adds the evaluation-rule component."""
    if counts is not None and not counts.empty:
        return crossed_interval(_matrix(counts, "n"), _matrix(counts, "k"))
    trial_acc = np.asarray(trial_acc, dtype=float)
    trial_acc = trial_acc[np.isfinite(trial_acc)]
    s = trial_acc.size
    if s < MIN_SEEDS:
        return NONE
    parts = [(float(trial_acc.var(ddof=1) / s), s - 1)]
    return _t_interval(float(trial_acc.mean()), parts, SEEDS_ONLY)


def trial_interval(counts: pd.DataFrame) -> Interval:
    """One trial's accuracy with its evaluation rules resampled: what the same model would
    score on another draw of rules. `counts`: that trial's rows (`rule_id`, `n`, `k`)."""
    if counts.empty or counts["n"].sum() == 0:
        return NONE
    n, k = counts["n"].to_numpy(dtype=float)[None, :], counts["k"].to_numpy(dtype=float)[None, :]
    v_rule, r = _rule_variance(n, k / np.maximum(n, 1))
    return _beta_interval(float(k.sum() / n.sum()), [(v_rule, r - 1)], n.sum(), WITHIN_TRIAL)


def count_text(k: float, n: float) -> str:
    """`0/1,251`: the raw count, for values of exactly 0 or 1, where two decimals hide how many
    examples stand behind them."""
    return f"{k:,.0f}/{n:,.0f}"


def method_note(methods: set[str]) -> str:
    """What the intervals of a report are, for the sentence under its tables."""
    level = f"{CONFIDENCE:.0%}"
    notes = {
        SEEDS_AND_RULES: (
            f"cells with ≥ {MIN_SEEDS} seeds: {level} interval of the mean over seeds, covering "
            "seed-to-seed and evaluation-rule variation (Clopper-Pearson at the effective "
            "number of examples, Welch-Satterthwaite degrees of freedom; coverage measured by "
            f"simulation, including at 0 and 1, where the raw count is given); {BIMODAL_NOTE}"
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
