"""The report of any sweep (orchestrator/report/core.py) on tables built by hand: cells over
seeds, intervals of metrics that are not proportions, the Pareto set, the least-data frontier."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from divsweep.orchestrator.report.core import (
    Headline,
    cells,
    least_groups,
    pareto_set,
    seed_interval,
    threshold_page,
)


def trials(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"status": ["finished"] * n, **columns})


def test_cells_average_seeds_and_sort_axes_as_numbers() -> None:
    table = trials(
        hidden=["16", "8", "16", "8", "16", "8"],
        seed=[0, 0, 1, 1, 2, 2],
        loss=[2.0, 3.0, 2.2, 3.1, 2.4, 2.9],
    )
    out = cells(table, ["hidden"], "loss")
    assert out["hidden"].tolist() == [8, 16]  # "16" < "8" as text
    assert out["loss"].tolist() == pytest.approx([3.0, 2.2])
    assert out["n_seeds"].tolist() == [3, 3]
    half = stats.t.ppf(0.975, 2) * stats.sem([2.0, 2.2, 2.4])
    assert out.loc[1, "loss_hi"] == pytest.approx(2.2 + half)  # not clipped at 1: a loss


def test_seed_interval_needs_three_seeds_and_covers() -> None:
    assert np.isnan(seed_interval(np.array([0.3, 0.4])).low)
    rng = np.random.default_rng(0)
    draws = rng.normal(5.0, 2.0, (2000, 3))
    hits = [(i := seed_interval(d)).low <= 5.0 <= i.high for d in draws]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_pareto_set_keeps_only_trials_nothing_beats() -> None:
    table = trials(
        cost=[1.0, 2.0, 3.0, 4.0, 5.0], acc=[0.2, 0.1, 0.5, 0.4, 0.9], trial_key=list("abcde")
    )
    assert pareto_set(table, "cost", "acc", "max")["trial_key"].tolist() == ["a", "c", "e"]
    # lower is better: the cheapest trial is best already
    assert pareto_set(table, "cost", "acc", "min")["trial_key"].tolist() == ["a", "b"]
    failed = table.assign(status=["failed"] + ["finished"] * 4)
    assert pareto_set(failed, "cost", "acc", "max")["trial_key"].tolist() == ["b", "c", "e"]


def test_least_groups_per_budget() -> None:
    table = pd.DataFrame(
        {
            "n_instructions": [8, 32, 128, 8, 32, 128],
            "total_examples": [1000, 1000, 1000, 4000, 4000, 4000],
            "acc": [0.1, 0.6, 0.9, 0.05, 0.3, 0.7],
        }
    )
    out = least_groups(table, "acc", 0.5, ["total_examples"])
    assert out.set_index("total_examples")["n_instructions"].to_dict() == {1000: 32, 4000: 128}
    never = least_groups(table, "acc", 0.95, ["total_examples"])
    assert never["n_instructions"].isna().all()


def test_preemptions_are_said_not_counted_as_failures() -> None:
    from divsweep.orchestrator.report.collect import preemption_line

    assert preemption_line(trials(preemptions=[0.0, 0.0])) is None
    line = preemption_line(trials(preemptions=[2.0, 0.0, 1.0]))
    assert line.startswith("Preemptions: 2 trial(s) checkpointed on a preemption notice 3 time")


def test_threshold_vs_budget_for_a_users_module_per_point_of_its_other_axes() -> None:
    """A user's sweep (no examples_seen logged) over groups x two budgets x a width: at width 64
    I* is 40 at both budgets (β = 0), at width 128 it grows 16x with a 16x budget (β = 1)."""
    rng = np.random.default_rng(0)
    rows = [
        {"n_instructions": i, "total_examples": n, "model.init_args.width": w, "seed": s,
         "test_exact_match": float(np.clip(0.95 / (1 + (i_star / i) ** 2.5)
                                            + rng.normal(0, 0.02), 0, 1))}
        for w in ("64", "128")
        for n in (1_000, 16_000)
        for i, s in itertools.product((4, 16, 64, 256, 1024, 4096), range(3))
        for i_star in [40 if w == "64" else 40 * n / 1_000 / 4]
    ]  # fmt: skip
    table = trials(**pd.DataFrame(rows).to_dict("list"))
    axes = ["n_instructions", "total_examples", "model.init_args.width"]
    page = threshold_page(table, Headline("test/exact_match", "max"), axes)
    wide, narrow = page.lines  # the width's values in their grouped order: "128", "64"
    assert wide.startswith("Threshold vs budget, model.init_args.width=128: ")
    assert "consistent with a threshold set by examples per instruction" in wide
    assert narrow.startswith("Threshold vs budget, model.init_args.width=64: ")
    assert "consistent with a threshold set by the number of instructions" in narrow
    # a loss (a minimum, not a proportion) has no threshold
    assert threshold_page(table, Headline("test/exact_match", "min"), axes) is None


def test_the_core_report_loads_none_of_the_builtin_studys_report() -> None:
    # in a fresh interpreter: this one may have loaded them for other tests
    import subprocess
    import sys

    code = (
        "import sys, divsweep.orchestrator.report.core; "
        "print(' '.join(m for m in sys.modules if m.startswith('divsweep.orchestrator.report.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    builtin = [m for m in loaded if m.startswith("divsweep.orchestrator.report.builtin")]
    assert loaded and not builtin
