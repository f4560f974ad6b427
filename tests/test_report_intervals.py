"""Intervals and the transition estimate on synthetic sweeps from a known model.

The model is the design divsweep's sweeps have: seeds × evaluation rules, crossed (every trial
of a sweep is scored on the same held-out rules), with a seed effect, a rule effect, their
interaction and Bernoulli examples, all on the logit scale. The estimand is what the cell's
mean estimates: the expected accuracy over seeds, rules and examples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from divsweep.orchestrator.report.intervals import (
    MIN_SEEDS,
    NO_INTERVAL,
    SEEDS_AND_RULES,
    SEEDS_ONLY,
    WITHIN_TRIAL,
    cell_interval,
    rule_counts,
    trial_interval,
)
from divsweep.orchestrator.report.transition import (
    FAILS,
    GENERALIZES,
    MIN_LEVELS,
    RULES_ONLY,
    SEEDS_THEN_RULES,
    bracket,
    estimate,
)

N_REPETITIONS = 300


def _crossed(rng, logit: float, n_seeds: int, n_rules: int, per_rule: int, sd):
    """(trial accuracies, per-rule counts) of one simulated cell."""
    sd_seed, sd_rule, sd_inter = sd
    rules = rng.normal(0, sd_rule, n_rules)
    rows, accs = [], []
    for s in range(n_seeds):
        p = expit(logit + rng.normal(0, sd_seed) + rules + rng.normal(0, sd_inter, n_rules))
        k = rng.binomial(per_rule, p)
        accs.append(k.sum() / (per_rule * n_rules))
        rows += [(f"s{s}", r, per_rule, int(k[r])) for r in range(n_rules)]
    return np.array(accs), pd.DataFrame(rows, columns=["run_id", "rule_id", "n", "k"])


def _estimand(logit: float, sd) -> float:
    rng = np.random.default_rng(12345)
    z = rng.normal(0, 1, (3, 2_000_000)) * np.array(sd)[:, None]
    return float(expit(logit + z.sum(axis=0)).mean())


@pytest.mark.parametrize(
    ("n_seeds", "logit", "sd"),
    [
        (3, -0.5, (0.6, 1.0, 0.3)),  # seeds vary a lot: 3 of them, t with few dof
        (5, 0.8, (0.1, 1.5, 0.3)),  # the shared rules dominate: seed spread alone is too narrow
        (4, -1.5, (0.4, 0.8, 0.5)),
    ],
)
def test_nominal_95_interval_covers_at_least_90_percent(n_seeds, logit, sd) -> None:
    truth = _estimand(logit, sd)
    rng = np.random.default_rng(n_seeds)
    hits = 0
    for _ in range(N_REPETITIONS):
        accs, counts = _crossed(rng, logit, n_seeds, n_rules=100, per_rule=10, sd=sd)
        ci = cell_interval(accs, counts)
        assert ci.method == SEEDS_AND_RULES
        hits += ci.low <= truth <= ci.high
    assert hits / N_REPETITIONS >= 0.90, hits / N_REPETITIONS


def test_seed_spread_alone_undercovers_when_rules_dominate() -> None:
    """Why the rule component is there: without it the same intervals miss far more often."""
    sd, logit = (0.1, 1.5, 0.3), 0.8
    truth = _estimand(logit, sd)
    rng = np.random.default_rng(7)
    with_rules = seeds_only = 0
    for _ in range(N_REPETITIONS):
        accs, counts = _crossed(rng, logit, 5, n_rules=100, per_rule=10, sd=sd)
        ci, naive = cell_interval(accs, counts), cell_interval(accs)
        assert naive.method == SEEDS_ONLY
        with_rules += ci.low <= truth <= ci.high
        seeds_only += naive.low <= truth <= naive.high
    assert seeds_only / N_REPETITIONS < 0.8 < 0.9 <= with_rules / N_REPETITIONS


def test_within_trial_interval_covers_the_trials_own_expected_accuracy() -> None:
    """Seed fixed: the interval targets what this model scores on another draw of rules."""
    rng = np.random.default_rng(3)
    seed_effect, sd_rule = 0.4, 1.2
    z = np.random.default_rng(1).normal(0, sd_rule, 2_000_000)
    truth = float(expit(seed_effect + z).mean())
    hits = 0
    for _ in range(N_REPETITIONS):
        p = expit(seed_effect + rng.normal(0, sd_rule, 100))
        k = rng.binomial(10, p)
        counts = pd.DataFrame({"rule_id": range(100), "n": 10, "k": k})
        ci = trial_interval(counts)
        assert ci.method == WITHIN_TRIAL
        hits += ci.low <= truth <= ci.high
    assert hits / N_REPETITIONS >= 0.90


def test_fewer_than_three_seeds_get_no_cell_interval() -> None:
    accs, counts = _crossed(np.random.default_rng(0), 0.0, MIN_SEEDS - 1, 50, 10, (0.5, 1, 0.2))
    assert cell_interval(accs, counts).method == NO_INTERVAL
    assert np.isnan(cell_interval(accs, counts).low)


def test_interval_by_hand() -> None:
    """Three seeds, two rules of 10 examples each, no rule variation: seed part only.
    Trial accuracies 0.5, 0.6, 0.7: mean 0.6, sd 0.1, t(0.975, 2) = 4.303, se 0.1 / sqrt(3)."""
    counts = pd.DataFrame(
        [(s, r, 10, k) for s, k in (("a", 5), ("b", 6), ("c", 7)) for r in (0, 1)],
        columns=["run_id", "rule_id", "n", "k"],
    )
    ci = cell_interval(np.array([0.5, 0.6, 0.7]), counts)
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert ci.low == pytest.approx(0.6 - half, abs=1e-5)
    assert ci.high == pytest.approx(0.6 + half, abs=1e-5)


def test_rule_counts_from_examples() -> None:
    examples = pd.DataFrame(
        {"run_id": ["a"] * 5, "rule_id": [1, 1, 2, 2, 2], "correct": [1, 0, 1, 1, 0]}
    )
    got = rule_counts(examples)
    assert got.to_dict("records") == [
        {"run_id": "a", "rule_id": 1, "n": 2, "k": 1},
        {"run_id": "a", "rule_id": 2, "n": 3, "k": 2},
    ]


def _step_sweep(levels, n_seeds, step_at, rng, n_rules=60, per_rule=5):
    """Trials whose accuracy jumps from 0.02 to 0.9 between two levels of I."""
    trials, rows = [], []
    rule_effect = rng.normal(0, 0.5, n_rules)
    for level in levels:
        base = 2.2 if level > step_at else -3.9
        for s in range(n_seeds):
            run = f"I{level}-s{s}"
            trials.append((run, level, 10_000.0, s))
            k = rng.binomial(per_rule, expit(base + rule_effect))
            rows += [(run, r, per_rule, int(k[r])) for r in range(n_rules)]
    trials = pd.DataFrame(trials, columns=["run_id", "n_instructions", "total_examples", "seed"])
    return trials, pd.DataFrame(rows, columns=["run_id", "rule_id", "n", "k"])


def test_fit_refuses_a_grid_that_cannot_identify_it() -> None:
    levels = [8, 64, 512, 4096][: MIN_LEVELS - 1]
    trials, counts = _step_sweep(levels, 2, 100, np.random.default_rng(0))
    assert estimate(trials, counts) is None


def test_fit_places_a_known_step_inside_its_bracket() -> None:
    levels = [10, 30, 100, 300, 1000, 3000]
    trials, counts = _step_sweep(levels, 2, 200, np.random.default_rng(1))
    fit = estimate(trials, counts)
    assert fit is not None and fit.interval_method == SEEDS_THEN_RULES
    assert 100 <= fit.midpoint <= 300
    assert 100 <= fit.ci_low <= fit.midpoint <= fit.ci_high <= 300
    single = estimate(*_step_sweep(levels, 1, 200, np.random.default_rng(2)))
    assert single is not None and single.interval_method == RULES_ONLY


def test_bracket_reads_the_grid_with_its_thresholds() -> None:
    means = pd.Series({8: 0.0, 64: FAILS / 2, 512: GENERALIZES - 0.1, 4096: GENERALIZES + 0.1})
    b = bracket(means, 40_000)
    assert (b.fails, b.generalizes) == (64, 4096)
    assert bracket(pd.Series({8: 0.3, 64: 0.4}), 1).fails is None
