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

from divsweep.orchestrator.report import intervals
from divsweep.orchestrator.report.builtin.aggregate import aggregate
from divsweep.orchestrator.report.builtin.transition import (
    FAILS,
    FEW_SEEDS,
    GENERALIZES,
    MIN_LEVELS,
    RULES_ONLY,
    SEEDS_THEN_RULES,
    bracket,
    estimate,
    expansion,
)
from divsweep.orchestrator.report.intervals import (
    BIMODAL_NOTE,
    MIN_SEEDS,
    NO_INTERVAL,
    SEEDS_AND_RULES,
    SEEDS_ONLY,
    WITHIN_TRIAL,
    cell_interval,
    count_text,
    crossed_interval,
    method_note,
    rule_counts,
    trial_interval,
)

N_REPETITIONS = 300
N_COVERAGE = 1_000  # repetitions behind each coverage figure of the edge and bimodal cases
SD = (0.6, 1.0, 0.3)  # seed, rule, interaction: seeds and rules as the committed studies vary


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


def _estimand(logit: float, sd, seeds=None) -> float:
    """Expected accuracy over seeds, rules and examples; `seeds`: (logits, probabilities) of a
    seed effect with two modes instead of a normal one."""
    rng = np.random.default_rng(12345)
    z = rng.normal(0, 1, (3, 2_000_000)) * np.array(sd)[:, None]
    if seeds is not None:
        z[0] = rng.choice(seeds[0], z.shape[1], p=seeds[1])
    return float(expit(logit + z.sum(axis=0)).mean())


def _cell_coverage(logit, sd, n_seeds, seeds=None, n_rules=100, per_rule=5, rng_seed=0):
    """(share of N_COVERAGE cells whose interval holds the estimand, which of them drew seeds
    from both modes): 5 inputs per rule, as the committed studies score their test rules."""
    truth = _estimand(logit, sd, seeds)
    rng = np.random.default_rng(rng_seed)
    hits, both = np.zeros(N_COVERAGE, bool), np.zeros(N_COVERAGE, bool)
    for i in range(N_COVERAGE):
        if seeds is None:
            effect = rng.normal(0, sd[0], n_seeds)
        else:
            mode = rng.choice(len(seeds[0]), n_seeds, p=seeds[1])
            effect, both[i] = np.asarray(seeds[0])[mode], len(set(mode)) > 1
        eta = logit + effect[:, None] + rng.normal(0, sd[1], n_rules)
        k = rng.binomial(per_rule, expit(eta + rng.normal(0, sd[2], eta.shape)))
        ci = crossed_interval(np.full(k.shape, float(per_rule)), k.astype(float))
        assert ci.method == SEEDS_AND_RULES and ci.high > ci.low
        hits[i] = ci.low <= truth <= ci.high
    return hits, both


@pytest.mark.parametrize(
    ("n_seeds", "logit", "sd"),
    [
        (3, -8.0, SD),  # p = 0.0007: a third of cells count 0 of 1,500
        (3, 8.0, SD),  # p = 0.9993
        (3, -6.5, SD),  # p = 0.003: a few right, all in one seed or two
        (3, -0.5, SD),  # seeds vary a lot: 3 of them, few degrees of freedom
        (5, 0.8, (0.1, 1.5, 0.3)),  # the shared rules dominate: seed spread alone is too narrow
        (4, -1.5, (0.4, 0.8, 0.5)),
    ],
    ids=["p0.0007", "p0.9993", "p0.003", "mid-3-seeds", "rules-dominate", "4-seeds"],
)
def test_nominal_95_interval_covers_at_least_93_percent(n_seeds, logit, sd) -> None:
    hits, _ = _cell_coverage(logit, sd, n_seeds)
    assert hits.mean() >= 0.93, hits.mean()


def test_bimodal_seeds_are_covered_whenever_the_seeds_show_both_modes() -> None:
    """A third of seeds near 0.5, the rest near 0.17 (the frontier study's 512 cell: 0.18, 0.15,
    0.50). Where all 3 seeds land in one mode (1/3 of cells) no interval from them can reach the
    mean, and BIMODAL_NOTE says so; where they show both, the interval covers."""
    seeds = ([-1.6, 0.0], [2 / 3, 1 / 3])
    hits, both = _cell_coverage(0.0, (0.0, 0.8, 0.3), 3, seeds)
    assert hits[both].mean() >= 0.93, hits[both].mean()
    assert 0.93 > hits.mean() >= both.mean() - 0.02  # the ceiling, and it reaches it
    assert "all 3 seeds of a cell land in one mode a third of the time" in BIMODAL_NOTE
    assert BIMODAL_NOTE in method_note({SEEDS_AND_RULES})


def test_two_seeds_would_undercover_even_around_one_value(monkeypatch) -> None:
    """Why cells need MIN_SEEDS = 3 for an interval: with 2, one degree of freedom for the seed
    variance, the same interval covers about 0.89."""
    monkeypatch.setattr(intervals, "MIN_SEEDS", 2)
    hits, _ = _cell_coverage(-0.5, SD, 2)
    assert hits.mean() < 0.93


@pytest.mark.parametrize("logit", [-8.0, 8.0], ids=["p0.0003", "p0.9997"])
def test_within_trial_interval_holds_at_the_edges(logit: float) -> None:
    """A 2-seed cell lists each seed with this interval: its own expected accuracy over rules,
    500 examples (5 per rule), most trials counting 0 (or all) of them."""
    truth = _estimand(logit, (0.0, 1.0, 0.0))
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(N_COVERAGE):
        k = rng.binomial(5, expit(logit + rng.normal(0, 1.0, 100)))
        ci = trial_interval(pd.DataFrame({"rule_id": range(100), "n": 5, "k": k}))
        hits += ci.low <= truth <= ci.high
    assert hits / N_COVERAGE >= 0.93, hits / N_COVERAGE


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
    Trial accuracies 0.5, 0.6, 0.7: mean 0.6, variance of the mean 0.01 / 3, so 72 binomial
    examples would vary as much; capped at the 60 there are, and shrunk by (1.96 / t(0.975, 2))²
    = 0.2075 for the 2 degrees of freedom: Clopper-Pearson at 7.47 of 12.45."""
    counts = pd.DataFrame(
        [(s, r, 10, k) for s, k in (("a", 5), ("b", 6), ("c", 7)) for r in (0, 1)],
        columns=["run_id", "rule_id", "n", "k"],
    )
    ci = cell_interval(np.array([0.5, 0.6, 0.7]), counts)
    assert ci.low == pytest.approx(0.29609, abs=1e-4)
    assert ci.high == pytest.approx(0.85559, abs=1e-4)
    # a trial with none right: its raw count, and an interval of Clopper-Pearson's 0/500 width
    none = trial_interval(pd.DataFrame({"rule_id": range(100), "n": 5, "k": 0}))
    assert (none.low, none.high) == (0.0, pytest.approx(1 - 0.025 ** (1 / 500)))
    assert count_text(0, 1251) == "0/1,251"


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
    assert fit is not None and fit.interval_method == f"{SEEDS_THEN_RULES}; {FEW_SEEDS}"
    assert 100 <= fit.midpoint <= 300
    # widened for 2 seeds, the interval may pass the step's bracket, not the levels beside it
    assert 30 < fit.ci_low <= fit.midpoint <= fit.ci_high < 1000
    single = estimate(*_step_sweep(levels, 1, 200, np.random.default_rng(2)))
    assert single is not None and single.interval_method == RULES_ONLY


def test_the_midpoint_interval_widens_most_where_seeds_are_fewest() -> None:
    """Resampling s seeds shows (s - 1) / s of their variance, and the spread is estimated:
    the bootstrap's deviations are stretched by sqrt(s / (s - 1)) · t / z (with one seed per
    level nothing is stretched: the rules alone are resampled)."""
    z = 1.959964
    assert expansion([1] * 6) == 1.0
    assert expansion([3] * 6) == pytest.approx(np.sqrt(3 / 2) * 2.178813 / z, rel=1e-5)
    assert expansion([2] * 6) == pytest.approx(np.sqrt(2) * 2.446912 / z, rel=1e-5)
    assert expansion([3, 3, 2]) == pytest.approx(np.sqrt(2) * 2.570582 / z, rel=1e-5)
    assert expansion([10] * 6) < expansion([3] * 6) < expansion([2] * 6)


def test_bracket_reads_the_grid_with_its_thresholds() -> None:
    means = pd.Series({8: 0.0, 64: FAILS / 2, 512: GENERALIZES - 0.1, 4096: GENERALIZES + 0.1})
    b = bracket(means, 40_000)
    assert (b.fails, b.generalizes) == (64, 4096)
    assert bracket(pd.Series({8: 0.3, 64: 0.4}), 1).fails is None


def test_cells_at_0_or_1_print_their_raw_counts() -> None:
    """Two decimals hide how many examples stand behind a 0.00: the cell and each seed give
    the count, and each seed's interval is not of zero width."""
    trials, examples = [], []
    for i in (8, 64):
        for seed in range(2):
            correct = np.arange(626) % 2 == 0 if i == 64 else np.zeros(626, bool)
            trials.append(
                {
                    "run_id": f"{i}-{seed}",
                    "status": "finished",
                    "seed": seed,
                    "distribution": "uniform",
                    "alpha": np.nan,
                    "p_pattern_present": 1.0,
                    "total_examples": 1_000,
                    "n_instructions": i,
                    "examples_per_instruction": 1_000 / i,
                    "unseen_exact_match": correct.mean(),
                }
            )
            rows = {"run_id": f"{i}-{seed}", "split": "unseen", "rule_id": np.arange(626) // 5}
            examples.append(pd.DataFrame({**rows, "correct": correct}))
    cells = aggregate(pd.DataFrame(trials), ["unseen_exact_match"], pd.concat(examples))
    cells = cells.set_index("n_instructions")
    assert cells.loc[8, "unseen_exact_match_count"] == "0/1,252"
    assert cells.loc[8, "unseen_exact_match_seeds"] == (
        "0.00 (0/626) [0.00–0.01], 0.00 (0/626) [0.00–0.01]"
    )
    assert cells.loc[64, "unseen_exact_match_count"] == ""
    assert "(" not in cells.loc[64, "unseen_exact_match_seeds"]
