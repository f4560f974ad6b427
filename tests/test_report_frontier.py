"""The frontier findings: which hypothesis the thresholds per budget support, and what an
adaptive search saved against a full grid at the step it reached."""

from __future__ import annotations

import pandas as pd
import pytest

from divsweep.orchestrator.report.findings import frontier_sentence, search_cost_sentence
from divsweep.orchestrator.report.transition import Bracket, Transition


def ranges(*per_budget: tuple[float, float, float]) -> list[Bracket]:
    return [Bracket(n, fails, generalizes) for n, fails, generalizes in per_budget]


@pytest.mark.parametrize(
    ("found", "verdict"),
    [
        # I* ~ 100 at every budget
        (ranges((10_000, 64, 128), (40_000, 90, 181), (160_000, 64, 128)),
         "the data support a threshold set by the number of instructions"),
        # I* ~ N / 100: the same examples per instruction
        (ranges((10_000, 64, 128), (40_000, 256, 512), (160_000, 1024, 2048)),
         "the data support a threshold set by examples per instruction"),
        # brackets wide enough for both
        (ranges((10_000, 8, 4096), (40_000, 8, 4096), (160_000, 64, 8192)),
         "this sweep cannot tell which sets the threshold"),
        # I* grows with N, at a quarter of the rate
        (ranges((10_000, 64, 90), (40_000, 90, 128), (160_000, 128, 181)),
         "I* moves with the budget, but not in proportion to it"),
    ],
    ids=["instructions", "examples-per-instruction", "cannot-tell", "neither"],
)  # fmt: skip
def test_frontier_sentence_names_the_hypothesis_every_range_allows(found, verdict: str) -> None:
    sentence = frontier_sentence(found, [])
    assert sentence is not None and verdict in sentence
    assert sentence.startswith("Threshold vs budget (N = 10,000: I* in ")


def test_a_fit_interval_replaces_its_budgets_bracket_and_two_budgets_say_nothing() -> None:
    found = ranges((10_000, 8, 4096), (40_000, 64, 128), (160_000, 64, 128))
    fit = Transition(10_000, 100, 80, 120, 0.0, 0.8, 1.0, 6, 6, "seeds then rules")
    sentence = frontier_sentence(found, [fit])
    assert "N = 10,000: I* in 80–120 (fit interval)" in sentence
    assert "set by the number of instructions" in sentence
    assert frontier_sentence(found[:2], []) is None


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
