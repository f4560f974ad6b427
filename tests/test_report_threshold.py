"""The joint frontier model on synthetic sweeps drawn with a known β.

Each sweep is the design the report reads: budgets × a common grid of n_instructions × seeds, one
trial each, scored on evaluation rules that every trial shares. A trial's accuracy on a rule is
low + (high - low) · σ(slope · (log10 I - m_b - shift) + noise + rule effect), m_b = m0 + β ·
log10 N_b (centred): the seed moves the trial's curve in log I and on the logit scale, the rules
are easier or harder for every trial alike. The noise is symmetric, so the population curve of
each budget is halfway between its plateaus at m_b, and β is what the model's β estimates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from divsweep.orchestrator.report.threshold import (
    CANNOT_TELL,
    EXAMPLES_PER_INSTRUCTION,
    INSTRUCTIONS,
    bracket_bounds,
    budget_exponent,
    fit,
)

BUDGETS = np.array([10_000, 40_000, 160_000])  # 16x from the least to the most
GRID = np.array([4, 16, 64, 256, 1024, 4096])
N_SWEEPS = 200


def sweep(rng, beta: float, budgets=BUDGETS, seeds: int = 3, n_rules: int = 80, per_rule: int = 5):
    """(x, budget index, log10 budgets, n, k) of one simulated sweep: I* = 200 at the middle
    budget; per trial, a shift of sd 0.1 decade and logit noise of sd 0.4; rules of sd 0.8."""
    log_budget = np.log10(budgets)
    z = log_budget - log_budget.mean()
    b, x, s = (a.ravel() for a in np.meshgrid(np.arange(len(budgets)), np.log10(GRID),
                                              np.arange(seeds), indexing="ij"))  # fmt: skip
    seed_shift = rng.normal(0, 0.05, seeds)[s]  # shared by a seed's trials
    mid = np.log10(200) + beta * z[b] + seed_shift + rng.normal(0, 0.1, len(x))
    eta = 3.0 * (x - mid) + rng.normal(0, 0.4, len(x))
    p = 0.02 + 0.88 * expit(eta[:, None] + rng.normal(0, 0.8, n_rules)[None, :])
    k = rng.binomial(per_rule, p).sum(axis=1).astype(float)
    return x, b, log_budget, np.full(len(x), float(n_rules * per_rule)), k


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_beta_lies_in_its_interval_in_at_least_90_percent_of_sweeps(beta: float) -> None:
    rng = np.random.default_rng(int(beta) + 1)
    fits = [fit(*sweep(rng, beta)) for _ in range(N_SWEEPS)]
    assert all(f is not None for f in fits)
    covered = np.mean([f.ci_low <= beta <= f.ci_high for f in fits])
    assert covered >= 0.90, covered
    # and the budgets separate the hypotheses: the verdict names the true one in most sweeps
    right = INSTRUCTIONS if beta == 0 else EXAMPLES_PER_INSTRUCTION
    assert np.mean([f.verdict == right for f in fits]) >= 0.85


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_budgets_too_close_to_separate_them_cannot_tell(beta: float) -> None:
    """Budgets 10% apart: β = 0 and β = 1 differ by 0.04 decade in how far I* moves between
    them, less than the seeds move it."""
    rng = np.random.default_rng(int(beta) + 3)
    fits = [fit(*sweep(rng, beta, budgets=np.array([10_000, 11_000]))) for _ in range(N_SWEEPS)]
    verdicts = [f.verdict if f is not None else None for f in fits]
    assert verdicts.count(CANNOT_TELL) / N_SWEEPS >= 0.9, verdicts


def test_a_budget_where_nothing_is_learnt_places_no_midpoint() -> None:
    """At one budget every trial scores about 0 (cpu-frontier's 375 steps at N = 10,000): its
    curve does not rise, so no I* and no β, however narrow an interval the fit would give."""
    rng = np.random.default_rng(5)
    x, b, log_budget, n, k = sweep(rng, 0.0, budgets=np.array([10_000, 160_000]))
    k[b == 0] = rng.binomial(n[b == 0].astype(int), 0.002)
    assert fit(x, b, log_budget, n, k) is None


def test_trials_scattered_further_widen_the_interval() -> None:
    """The interval is measured from the trials' scatter, not from the examples' count: 40
    more or fewer right of 400 in alternate trials."""
    x, b, log_budget, n, k = sweep(np.random.default_rng(5), 0.0)
    tight = fit(x, b, log_budget, n, k)
    noisy = fit(x, b, log_budget, n, np.clip(k + np.resize([40.0, -40.0], len(k)), 0, n))
    assert noisy.ci_high - noisy.ci_low > tight.ci_high - tight.ci_low


def test_budget_exponent_reads_trials_with_or_without_counts() -> None:
    """From a trial table: counts where per-example predictions back every trial; else each
    trial's accuracy as a proportion, which gives the same β when trials have equal counts."""
    x, b, log_budget, n, k = sweep(np.random.default_rng(6), 1.0)
    trials = pd.DataFrame({"n_instructions": np.round(10**x), "total_examples": BUDGETS[b],
                           "acc": k / n, "n": n, "k": k})  # fmt: skip
    counted = budget_exponent(trials, "acc")
    plain = budget_exponent(trials.drop(columns=["n", "k"]), "acc")
    assert counted.beta == pytest.approx(plain.beta, abs=1e-3)
    assert counted.ci_low == pytest.approx(plain.ci_low, abs=1e-3)
    assert set(counted.midpoints) == {float(n) for n in BUDGETS}
    assert counted.n_trials == len(trials)
    # a budget with too few n_instructions values is left out; one budget is not enough
    few = trials[~((trials["total_examples"] == 10_000) & (trials["n_instructions"] > 64))]
    assert set(budget_exponent(few, "acc").midpoints) == {40_000.0, 160_000.0}
    assert budget_exponent(trials[trials["total_examples"] == 40_000], "acc") is None


def test_brackets_alone_bound_beta_over_every_pair_of_budgets() -> None:
    """I* between 64 and 256 at budgets 16x apart: I* may move at most 4x, β within ±0.5;
    a power law through three budgets must meet every pair's bounds; brackets no power law
    passes through, or one budget, bound nothing."""
    assert bracket_bounds({1e4: (64, 256), 1.6e5: (64, 256)}) == pytest.approx((-0.5, 0.5))
    assert bracket_bounds({1e4: (16, 64), 1.6e5: (256, 1024)}) == pytest.approx((0.5, 1.5))
    three = {1e4: (16, 64), 4e4: (16, 64), 1.6e5: (256, 1024)}
    # 1e4 -> 1.6e5 allows (0.5, 1.5); 4e4 -> 1.6e5 (log 4 / log 4 =) 1 to 3; 1e4 -> 4e4 -1 to 1
    assert bracket_bounds(three) == pytest.approx((1.0, 1.0))
    assert bracket_bounds({1e4: (16, 64), 1e5: (1024, 4096), 1e6: (16, 64)}) is None
    assert bracket_bounds({1e4: (64, 256)}) is None
