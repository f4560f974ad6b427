"""The frontier findings: the joint model's β with its tests and verdict, and what an adaptive
search saved against a full grid at the step it reached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divsweep.orchestrator.report.findings import (
    UNSEEN,
    budget_exponent_of,
    frontier_sentence,
    search_cost_sentence,
)
from divsweep.orchestrator.report.threshold import (
    CANNOT_TELL,
    EXAMPLES_PER_INSTRUCTION,
    INSTRUCTIONS,
    NEITHER,
    Exponent,
)


def exponent(beta: float, lo: float, hi: float, verdict: str) -> Exponent:
    return Exponent(beta, lo, hi, 0.2, 0.0004, verdict, {10_000.0: 180, 160_000.0: 110}, 32, 40)


@pytest.mark.parametrize(
    ("e", "verdict"),
    [
        (exponent(-0.17, -0.48, 0.13, INSTRUCTIONS),
         "β = 1 is rejected and β = 0 is not: consistent with a threshold set by the number of "
         "instructions"),
        (exponent(0.9, 0.6, 1.2, EXAMPLES_PER_INSTRUCTION),
         "consistent with a threshold set by examples per instruction"),
        (exponent(0.4, -0.9, 1.7, CANNOT_TELL), "this sweep cannot tell which sets the threshold"),
        (exponent(0.4, 0.2, 0.6, NEITHER), "I* moves with the budget, but not in proportion"),
    ],
    ids=["instructions", "examples-per-instruction", "cannot-tell", "neither"],
)  # fmt: skip
def test_frontier_sentence_gives_beta_its_tests_and_the_verdict(e: Exponent, verdict) -> None:
    sentence = frontier_sentence(e)
    assert verdict in sentence
    assert f"β = {e.beta:.2f}, 95% interval {e.ci_low:.2f} to {e.ci_high:.2f}" in sentence
    assert "I* N = 10,000: ~180; N = 160,000: ~110" in sentence
    assert (
        "Test of β = 0 (set by the number of instructions): p = 0.200; of β = 1 (set by "
        "examples per instruction): p < 0.001" in sentence
    )
    assert frontier_sentence(None) is None


def test_frontier_of_a_trial_table_uses_counts_where_every_trial_has_them() -> None:
    """Trials of two budgets whose I* is 100 at both: β near 0; per-example rows of every trial
    give the counts, which match the trials' own values here, so β is the same either way."""
    rng = np.random.default_rng(0)
    rows, examples = [], []
    for budget in (10_000, 160_000):
        for i in (4, 16, 64, 256, 1024, 4096):
            for seed in range(3):
                acc = 0.9 / (1 + (100 / i) ** 3) + rng.normal(0, 0.02)
                run = f"{budget}-{i}-{seed}"
                correct = np.arange(200) < round(np.clip(acc, 0, 1) * 200)
                rows.append(
                    {
                        "run_id": run,
                        "n_instructions": i,
                        "total_examples": budget,
                        "seed": seed,
                        "status": "finished",
                        "distribution": "uniform",
                        "p_pattern_present": 1.0,
                        "unseen_exact_match": correct.mean(),
                    }
                )
                examples.append(pd.DataFrame({"run_id": run, "split": "unseen",
                                              "rule_id": np.arange(200) // 5,
                                              "correct": correct}))  # fmt: skip
    table = pd.DataFrame(rows)
    with_counts = budget_exponent_of(table, pd.concat(examples), UNSEEN)
    plain = budget_exponent_of(table, None, UNSEEN)
    assert with_counts.verdict == INSTRUCTIONS
    assert with_counts.beta == pytest.approx(plain.beta, abs=1e-3)
    assert with_counts.beta == pytest.approx(0, abs=0.1)


def trials(levels: list[int], seeds: int = 2, budget: int = 40_000) -> pd.DataFrame:
    rows = [{"n_instructions": i, "seed": s, "total_examples": budget, "status": "finished",
             "distribution": "uniform", "p_pattern_present": 0.8}
            for i in levels for s in range(seeds)]  # fmt: skip
    return pd.DataFrame(rows)


def test_search_cost_compares_with_a_full_grid_at_the_finest_step() -> None:
    # refined to ratio 2 near 16-64; a ratio-2 grid over 8-4096 has 10 levels, x 2 seeds
    sentence = search_cost_sentence(trials([8, 16, 32, 64, 512, 4096]))
    assert sentence == (
        "Search cost: 12 trials on the main grid's budgets; a full grid at the finest step they "
        "reached (ratio 2.00 between neighbouring n_instructions) over the same ranges would "
        "take 20 (60%)."
    )
    assert search_cost_sentence(trials([8, 16, 32, 64])) is None  # an even grid saves nothing
