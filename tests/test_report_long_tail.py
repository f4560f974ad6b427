"""Findings read off the cell table: the long-tail robustness threshold the report compares with
the paper's (I >= 10k robust), and the has-op and memorization sentences of a grid with no-op
inputs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from divsweep.orchestrator.report.builtin.figures import alpha_axis, seed_spread
from divsweep.orchestrator.report.builtin.findings import (
    APPLIED,
    SEEN,
    UNSEEN,
    best_and_targets,
    has_op_sentence,
    long_tail_robust_from,
    memorization_sentence,
    paper_vs_ours,
)
from divsweep.orchestrator.report.builtin.paper_reference import SEMANTIC_K


def cells(points: list[tuple[int, float, float]], budget: int = 40_000) -> pd.DataFrame:
    rows = []
    for n_instructions, uniform, power in points:
        common = {"n_instructions": n_instructions, "total_examples": budget}
        rows.append({**common, "distribution": "uniform", "alpha": None, UNSEEN: uniform})
        rows.append({**common, "distribution": "powerlaw", "alpha": 0.1, UNSEEN: power})
    return pd.DataFrame(rows)


def test_robust_from_the_smallest_I_after_which_every_power_law_keeps_up() -> None:
    # 8 and 64 never generalize (uniform < 0.1), so they say nothing about robustness
    found = long_tail_robust_from(cells([(8, 0.0, 0.0), (64, 0.03, 0.0), (512, 0.39, 0.11),
                                         (3072, 0.36, 0.35)]))  # fmt: skip
    assert found == (3072.0, 40_000.0)


def test_a_fragile_I_above_a_robust_one_moves_the_threshold_up() -> None:
    found = long_tail_robust_from(cells([(100, 0.5, 0.45), (1000, 0.6, 0.2), (10_000, 0.7, 0.7)]))
    assert found == (10_000.0, 40_000.0)


def test_none_without_power_law_trials_or_when_nothing_is_robust() -> None:
    uniform_only = cells([(100, 0.5, 0.5)])
    assert long_tail_robust_from(uniform_only[uniform_only["distribution"] == "uniform"]) is None
    assert long_tail_robust_from(cells([(100, 0.5, 0.1), (1000, 0.6, 0.2)])) is None


def no_op_grid(p_present: float) -> pd.DataFrame:
    rows = []
    for n_instructions, applied, overall in [(8, 0.0, 0.16), (512, 0.84, 0.86), (3072, 0.9, 0.92)]:
        for seed, jitter in ((0, -0.02), (1, 0.02)):
            rows.append({"n_instructions": n_instructions, "total_examples": 40_000, "seed": seed,
                         "distribution": "uniform", "p_pattern_present": p_present,
                         APPLIED: applied + jitter, UNSEEN: overall + jitter})  # fmt: skip
    return pd.DataFrame(rows)


def test_has_op_sentence_reports_where_the_rule_applies_at_both_ends_of_the_grid() -> None:
    assert has_op_sentence(no_op_grid(0.8)) == (
        "Inputs the rule changes (80% of them; the other 20% are no-ops to copy): unseen exact "
        "match 0.00 with 8 instructions and 0.90 with 3,072 (all inputs: 0.16 and 0.92)."
    )


def test_memorization_sentence_reads_unseen_on_the_inputs_the_headline_reads() -> None:
    # all inputs give 0.16 at 8 instructions: copied no-ops, not generalization
    grid = no_op_grid(0.8).assign(**{SEEN: 1.0})
    assert memorization_sentence(grid, APPLIED) == (
        "Memorization vs generalization (unseen on inputs the rule changes): with 8 instructions "
        "seen/unseen exact match is 1.00/0.00; with 3,072 it is 1.00/0.90."
    )
    assert "1.00/0.16" in memorization_sentence(grid, UNSEEN)
    assert memorization_sentence(grid[grid["n_instructions"] == 8], APPLIED) is None


def test_no_has_op_sentence_when_every_input_holds_the_pattern() -> None:
    assert has_op_sentence(no_op_grid(1.0)) is None


def test_i_min_is_read_on_has_op_inputs_when_no_ops_lift_the_floor() -> None:
    # overall unseen EM at 8 instructions is 0.16 (copied no-ops), has-op 0.00: it never
    # generalizes, so I_min (the paper's: the grid point above every failing one) is 512
    rows = {quantity: ours for quantity, _, ours in paper_vs_ours(no_op_grid(0.8), fits=[])}
    (i_min,) = (ours for quantity, ours in rows.items() if quantity.startswith("I_min"))
    assert i_min == "512 (budget 40,000) (has-op inputs: no-op copies excluded)"


def test_no_op_and_semantic_rows_read_each_value_of_their_setting() -> None:
    # has-op EM per no-op ratio: 0% no-ops reaches 0.5 at 512, 50% no-ops never does
    noop = pd.concat([no_op_grid(1.0), no_op_grid(0.5).assign(**{APPLIED: 0.3})])
    rows = {quantity: ours for quantity, _, ours in paper_vs_ours(noop, fits=[])}
    (row,) = (ours for quantity, ours in rows.items() if quantity.startswith("transition with"))
    assert row == (
        "no-op 50%: 0.30 at 8 → 0.30 at 3,072, none reaches 0.5; "
        "no-op 0%: 0.00 at 8 → 0.90 at 3,072, 0.5 from 512 "
        "(unseen EM on inputs the rule changes, budget 40,000)"
    )
    # k ranges in their natural order, [3, 4] before [3, 12]; each its own curve
    semantic = pd.concat(
        [no_op_grid(1.0).assign(**{SEMANTIC_K: "[3, 12]", UNSEEN: 0.05}),
         no_op_grid(1.0).assign(**{SEMANTIC_K: "[3, 4]"})]
    )  # fmt: skip
    rows = {quantity: ours for quantity, _, ours in paper_vs_ours(semantic, fits=[])}
    (row,) = (ours for quantity, ours in rows.items() if quantity.startswith("semantic"))
    assert row.startswith("train k [3, 4]: 0.16 at 8 → 0.92 at 3,072, 0.5 from 512; ")
    assert "train k [3, 12]: 0.05 at 8 → 0.05 at 3,072, none reaches 0.5" in row
    # neither row without the sweep that measures it
    plain = {quantity: ours for quantity, _, ours in paper_vs_ours(no_op_grid(0.8), fits=[])}
    assert all(
        ours == "not measured by this report"
        for quantity, ours in plain.items()
        if quantity.startswith(("transition with", "semantic"))
    )


def test_long_tail_robustness_is_read_where_the_rule_applies_when_inputs_hold_no_ops() -> None:
    # copied no-ops floor the overall number: 512 keeps 0.30 of 0.33 overall (robust on all
    # inputs) but 0.10 of 0.20 where the rule applies (not robust); 3,072 keeps both
    grid = cells([(512, 0.33, 0.30), (3072, 0.40, 0.38)]).assign(p_pattern_present=0.8)
    grid[APPLIED] = [0.20, 0.10, 0.30, 0.29]
    assert long_tail_robust_from(grid) == (3072.0, 40_000.0)
    assert long_tail_robust_from(grid.drop(columns=APPLIED)) == (512.0, 40_000.0)


def test_best_cell_and_targets_read_the_same_main_grid() -> None:
    # a power law above every uniform cell (cpu-longtail: 0.86 at alpha 0.07 against 0.77
    # uniform) once gave "Best cell ... 0.85" beside "No configuration reached 0.8"
    rows = [
        {"n_instructions": n, "examples_per_instruction": 40_000 / n, "total_examples": 40_000,
         "distribution": dist, "alpha": alpha, "p_pattern_present": 1.0, UNSEEN: unseen,
         SEEN: 1.0}
        for n, dist, alpha, unseen in [(512, "uniform", None, 0.77), (3024, "uniform", None, 0.76),
                                       (3024, "powerlaw", 0.07, 0.86)]
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    best, *reached = best_and_targets(table, UNSEEN)
    assert best.startswith("Best cell of the main grid (uniform distribution")
    assert "512 instructions" in best and "0.77" in best and "0.86" not in best
    assert "reached unseen exact match 0.8 " in reached[1] and reached[1].startswith("No cell of")
    assert "≥ 0.5 is first reached on the main grid" in reached[0]

    uniform_only = best_and_targets(table[table["distribution"] == "uniform"], UNSEEN)
    assert uniform_only[0].startswith("Best cell: 512 instructions")
    assert uniform_only[3].startswith("No cell reached unseen exact match 0.95")


def test_the_long_tail_axis_is_ticked_at_the_alphas_tried_alone() -> None:
    fig, ax = plt.subplots()
    ax.plot([0.03, 0.07, 0.5], [0.1, 0.4, 0.7])
    alpha_axis(ax, [0.03, 0.07, 0.5])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.03", "0.07", "0.5"]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))  # 4x10^-2 ... overlapped
    plt.close(fig)


def test_each_seed_is_drawn_beside_the_uniform_controls_seed_range() -> None:
    trials = pd.DataFrame(
        [{"distribution": "powerlaw", "alpha": 0.1, APPLIED: v} for v in (0.79, 0.25)]
        + [{"distribution": "uniform", "alpha": None, APPLIED: v} for v in (0.71, 0.82, None)]
    )
    fig, ax = plt.subplots()
    seed_spread(ax, trials, APPLIED, "C0")
    (points,) = ax.collections
    assert points.get_offsets().tolist() == [[0.1, 0.79], [0.1, 0.25]]
    (band,) = ax.patches  # the two finished controls; the third reported nothing
    assert (band.get_bbox().y0, band.get_bbox().y1) == (0.71, 0.82)
    plt.close(fig)
