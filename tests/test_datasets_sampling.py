"""Instruction universe (nesting, no unseen leakage) and the split of a budget across rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divsweep.datasets import DataConfig, TaskConfig
from divsweep.datasets.generate import train_table, training_rules, unseen_rules
from divsweep.datasets.rewrite import ENUMERATE_LIMIT, rules, universe_size
from divsweep.datasets.sampling import allocate, head_mask, largest_remainder
from divsweep.errors import SpecError

SMALL = TaskConfig(alphabet_size=8, pattern_length=2, replacement_length=2, input_length=(6, 10))


def test_small_universe_is_enumerated_completely_and_distinctly() -> None:
    assert universe_size(SMALL) == 4032
    every = rules(SMALL, 4032)
    assert len(set(every)) == 4032
    assert all(x != y and len(x) == len(y) == 2 and set(x + y) <= set("abcdefgh") for x, y in every)


def test_universe_size_counts_mixed_lengths() -> None:
    task = TaskConfig(alphabet_size=3, pattern_length=(1, 2), replacement_length=(2, 3), n_unseen=0)
    xs = 3 + 9
    ys = 9 + 27
    assert universe_size(task) == xs * ys - 9  # x == y only at length 2
    assert len(set(rules(task, universe_size(task)))) == universe_size(task)


@pytest.mark.parametrize(
    "task", [SMALL, TaskConfig(n_unseen=20_000)], ids=["enumerated", "sampled"]
)
def test_no_unseen_rule_in_any_training_set_and_sets_are_nested(task: TaskConfig) -> None:
    n_train = (4032 if task is SMALL else 60_000) - task.n_unseen
    big = DataConfig(task=task, n_instructions=n_train, examples_per_instruction=1)
    train = training_rules(big)
    unseen = set(unseen_rules(task))
    assert len(unseen) == task.n_unseen and len(set(train)) == n_train
    assert unseen.isdisjoint(train)
    small = DataConfig(task=task, n_instructions=100, examples_per_instruction=1)
    assert training_rules(small) == train[:100]
    # and the training rows themselves use only training rules
    rows = train_table(DataConfig(task=task, n_instructions=500, budget=2000))
    pairs = set(zip(rows["pattern"].to_pylist(), rows["replacement"].to_pylist(), strict=True))
    assert pairs.isdisjoint(unseen)
    assert min(rows["rule_id"].to_pylist()) >= task.n_unseen


@pytest.mark.parametrize("task", [SMALL, TaskConfig(n_unseen=2000)], ids=["enumerated", "sampled"])
def test_rule_seeds_resample_the_rules_nested_and_never_held_out(task: TaskConfig) -> None:
    def drawn(n: int, **kw) -> tuple:
        return training_rules(DataConfig(task=task, n_instructions=n, budget=n, **kw))

    unseen = set(unseen_rules(task))
    by_seed = {seed: drawn(1000, seed=seed) for seed in (0, 1, 2)}
    for rules_of_seed in by_seed.values():
        assert len(set(rules_of_seed)) == 1000 and unseen.isdisjoint(rules_of_seed)
    # seeds train on different instructions (two random 1000-sets of >= 2932 overlap ~1/3)
    assert len(set(by_seed[0]) & set(by_seed[1])) < 600
    # nested across I for one rule seed; the rule seed, not the data seed, orders them
    assert drawn(64, seed=1) == by_seed[1][:64]
    assert drawn(64, seed=5, rule_seed=1) == by_seed[1][:64]
    # the old behaviour: the universe order after the held-out pool, whatever the seed
    prefix = drawn(64, seed=3, rules="prefix")
    assert prefix == rules(task, task.n_unseen + 64)[task.n_unseen :] == drawn(64, rules="prefix")


def test_pattern_holdout_keeps_every_held_out_pattern_out_of_training() -> None:
    # 8 letters, |x| = 2: 64 patterns, 16 reserved for the held-out rules
    task = TaskConfig(alphabet_size=8, pattern_length=2, replacement_length=2,
                      input_length=(6, 10), n_unseen=200, holdout_patterns=16)  # fmt: skip
    held_out = unseen_rules(task)
    held_out_patterns = {x for x, _ in held_out}
    assert len(held_out) == 200 and len(held_out_patterns) == 16
    for seed, order in ((0, "resampled"), (1, "resampled"), (0, "prefix")):
        cfg = DataConfig(task=task, n_instructions=2000, budget=2000, seed=seed, rules=order)
        patterns = {x for x, _ in training_rules(cfg)}
        assert patterns.isdisjoint(held_out_patterns) and len(patterns) == 48
        assert set(train_table(cfg)["pattern"].to_pylist()).isdisjoint(held_out_patterns)
    # 48 patterns x 63 replacements: 3,024 training rules, and no more
    training_rules(DataConfig(task=task, n_instructions=3024, budget=3024))
    with pytest.raises(SpecError, match="^data.n_instructions: the task has only 3024 .* patterns"):
        training_rules(DataConfig(task=task, n_instructions=3025, budget=3025))
    with pytest.raises(SpecError, match="^data.task.n_unseen: only 63 rules have one of the 1 "):
        unseen_rules(task.model_copy(update={"holdout_patterns": 1}))


def test_sampled_universe_depends_on_the_seed_only() -> None:
    task = TaskConfig(n_unseen=10)
    assert universe_size(task) > ENUMERATE_LIMIT
    assert rules(task, 50) == rules(TaskConfig(n_unseen=10, input_length=60), 50)
    assert rules(task, 50) != rules(TaskConfig(n_unseen=10, universe_seed=1), 50)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 3000),
    extra=st.integers(0, 100_000),
    distribution=st.sampled_from(["uniform", "powerlaw"]),
    alpha=st.sampled_from([0.03, 0.1, 0.5, 1.0, 2.0]),
    seed=st.integers(0, 10),
)
def test_budget_is_met_exactly(n: int, extra: int, distribution: str, alpha: float, seed: int):
    budget = n + extra
    cfg = DataConfig(
        n_instructions=n, budget=budget, distribution=distribution, seed=seed,
        alpha=alpha if distribution == "powerlaw" else None,
    )  # fmt: skip
    counts = allocate(cfg)
    assert len(counts) == n and counts.sum() == budget and (counts >= 0).all()
    if distribution == "uniform":
        assert counts.max() - counts.min() <= 1 and (counts >= 1).all()


def test_examples_per_instruction_form_and_table_rows() -> None:
    cfg = DataConfig(task=SMALL, n_instructions=7, examples_per_instruction=3)
    assert allocate(cfg).tolist() == [3] * 7
    table = train_table(DataConfig(task=SMALL, n_instructions=7, budget=23))
    assert table.num_rows == 23
    ids, per_rule = np.unique(table["rule_id"].to_numpy(), return_counts=True)
    assert sorted(per_rule.tolist()) == [3, 3, 3, 3, 3, 4, 4]


@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.0, 2.0])
def test_powerlaw_shape_matches_alpha(alpha: float) -> None:
    # weights ~ power(alpha) have density alpha * w^(alpha-1) on [0, 1]; the MLE of alpha from
    # w / w.max() is -n / sum(log(w / w.max())), standard error about alpha / sqrt(n)
    cfg = DataConfig(n_instructions=5000, budget=10**12, distribution="powerlaw", alpha=alpha)
    counts = allocate(cfg).astype(float)
    counts = counts[counts > 0]
    alpha_hat = -len(counts) / np.log(counts / counts.max()).sum()
    assert alpha_hat == pytest.approx(alpha, rel=0.08)


def test_small_alpha_leaves_rare_instructions_out() -> None:
    cfg = DataConfig(n_instructions=1000, budget=10**6, distribution="powerlaw", alpha=0.03)
    counts = allocate(cfg)
    assert counts.sum() == 10**6
    assert (counts == 0).sum() > 100  # the long tail is effectively missing


def test_largest_remainder_and_head() -> None:
    assert largest_remainder(np.array([1.0, 1.0, 1.0]), 10).tolist() == [4, 3, 3]
    assert largest_remainder(np.array([0.5, 0.25, 0.25]), 5).tolist() == [3, 1, 1]
    counts = np.array([1, 50, 0, 30, 19])
    # sorted: 50, 30, 19, 1, 0; half of 100 is covered once 50 is in
    assert head_mask(counts).tolist() == [False, True, False, False, False]
    assert head_mask(np.array([10, 10, 10, 10])).tolist() == [True, True, False, False]
