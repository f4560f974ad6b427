"""The frontier findings: the joint model's β with its tests and verdict, and what an adaptive
search saved against a full grid at the step it reached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divsweep.orchestrator.report.builtin.aggregate import reference_slice
from divsweep.orchestrator.report.builtin.findings import (
    UNSEEN,
    budget_exponents_of,
    search_cost_sentence,
)
from divsweep.orchestrator.report.threshold import (
    CANNOT_TELL,
    EXAMPLES_PER_INSTRUCTION,
    INSTRUCTIONS,
    NEITHER,
    Exponent,
    compute_arms,
    frontier_sentence,
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
    [(arm, with_counts)] = budget_exponents_of(table, pd.concat(examples), UNSEEN)
    [(_, plain)] = budget_exponents_of(table, None, UNSEEN)
    assert arm == ""  # every trial saw as many examples: one arm, the whole sweep
    assert with_counts.verdict == INSTRUCTIONS
    assert with_counts.beta == pytest.approx(plain.beta, abs=1e-3)
    assert with_counts.beta == pytest.approx(0, abs=0.1)


def seen(steps: int, budget: int) -> float:
    """Examples seen in `steps` of batch 64: each pass over 10,000 examples ends on a batch of
    16, as the built-in datamodule's do."""
    return steps * 64.0 - 48 * (steps * 64 // 10_048 if budget == 10_000 else 0)


def arms_sweep(midpoint) -> pd.DataFrame:
    """configs/cpu-frontier.yaml's design: budgets 10,000 and 160,000 x 375 and 6,000 steps of
    batch 64 x 6 instruction counts x 3 seeds; `midpoint(budget, steps)` is the true I*."""
    rng = np.random.default_rng(1)
    rows = []
    for budget in (10_000, 160_000):
        for steps in (375, 6000):
            for i in (2, 8, 32, 128, 512, 2048):
                for seed in range(3):
                    acc = 0.9 / (1 + (midpoint(budget, steps) / i) ** 3) + rng.normal(0, 0.02)
                    rows.append({"run_id": f"{budget}-{steps}-{i}-{seed}", "n_instructions": i,
                                 "total_examples": budget, "seed": seed, "status": "finished",
                                 "distribution": "uniform", "p_pattern_present": 0.8,
                                 "train.max_steps": str(steps),
                                 "examples_seen": seen(steps, budget),
                                 UNSEEN: float(np.clip(acc, 0, 1))})  # fmt: skip
    return pd.DataFrame(rows)


def test_compute_arms_separate_fixed_steps_from_fixed_epochs() -> None:
    """I* is 100 but where 375 steps at N = 10,000 give 6.25: 6,000 steps at both budgets
    β = 0; 375 steps at both, and 2.4 passes at both (375 steps at 10,000, 6,000 at 160,000),
    β = 1."""
    table = arms_sweep(lambda budget, steps: 100 if steps == 6000 or budget > 10_000 else 6.25)
    arms = compute_arms(table)
    assert [(name, len(group)) for name, group in arms] == [
        ("fixed steps (~24,000 examples seen at every budget)", 36),
        ("fixed steps (~383,000 examples seen at every budget)", 36),
        ("fixed epochs (2.4 passes over each budget)", 36),
    ]
    verdicts = [e.verdict for _, e in budget_exponents_of(table, None, UNSEEN)]
    assert verdicts == [EXAMPLES_PER_INSTRUCTION, INSTRUCTIONS, EXAMPLES_PER_INSTRUCTION]


def test_compute_arms_are_one_unnamed_arm_at_one_compute_or_without_examples_seen() -> None:
    table = arms_sweep(lambda budget, steps: 100)
    fixed = table[table["train.max_steps"] == "6000"]
    assert [(name, len(group)) for name, group in compute_arms(fixed)] == [("", 36)]
    unlogged = table.drop(columns="examples_seen")
    assert [(name, len(group)) for name, group in compute_arms(unlogged)] == [("", 72)]


def test_an_arm_the_model_cannot_fit_is_said() -> None:
    assert frontier_sentence(None, "fixed epochs (2.4 passes over each budget)") == (
        "Threshold vs budget, fixed epochs (2.4 passes over each budget): β is not estimated; "
        "the joint model does not place I* inside the grid at every budget (no rise within the "
        "instruction counts swept, or fewer than 4 of them per budget)."
    )


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


def test_the_reference_slice_holds_the_longest_trained_of_equally_common_run_lengths() -> None:
    """The transition and figures read the reference slice: of 375 and 6,000 steps, as many
    trials each, the 6,000-step ones (of other settings, the first value)."""
    table = arms_sweep(lambda budget, steps: 100)
    assert set(reference_slice(table)["train.max_steps"]) == {"6000"}
    widths = table.assign(**{"model.d_model": table["seed"].map({0: "64", 1: "128", 2: "64"})})
    widths = widths[widths["seed"] < 2]
    assert set(reference_slice(widths)["model.d_model"]) == {"64"}  # numeric order, the first
