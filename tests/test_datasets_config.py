"""Bad configs fail before any work, with a SpecError naming the field."""

from __future__ import annotations

import pyarrow as pa
import pytest

from divsweep.datasets import DataConfig, EvalConfig, TaskConfig, build
from divsweep.datasets.generate import unseen_rules
from divsweep.errors import SpecError


def with_task(task: dict) -> dict:
    return {"n_instructions": 4, "budget": 8, "task": task}


SMALL = {"alphabet_size": 8, "pattern_length": 2, "replacement_length": 2, "input_length": [6, 10]}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_instructions": 0, "budget": 10}, "data.n_instructions"),
        ({"n_instructions": 4, "budget": 10, "examples_per_instruction": 2}, "data.budget"),
        ({"n_instructions": 4}, "data.budget"),
        ({"n_instructions": 40, "budget": 10}, "data.budget"),
        ({"n_instructions": 4, "budget": 10, "alpha": 1.0}, "data.alpha"),
        ({"n_instructions": 4, "budget": 10, "distribution": "powerlaw"}, "data.alpha"),
        ({"n_instructions": 4, "budget": 10, "distribution": "powerlaw", "alpha": 0}, "data.alpha"),
        ({"n_instructions": 4, "budget": 10, "distribution": "zipf"}, "data.distribution"),
        ({"n_instructions": 4, "budget": 10, "shuffle": True}, "data.shuffle"),
        ({"n_instructions": 4000, "budget": 8000, "task": SMALL}, "data.n_instructions"),
        (with_task({"alphabet_size": 27}), "data.task.alphabet_size"),
        (with_task({"pattern_length": [5, 3]}), "data.task.pattern_length"),
        (with_task({"pattern_length": 60}), "data.task.input_length"),
        (with_task({"p_pattern_present": 1.5}), "data.task.p_pattern_present"),
        (with_task({"mode": "first"}), "data.task.mode"),
        (with_task({"holdout_patterns": 0}), "data.task.holdout_patterns"),
        ({"n_instructions": 4, "budget": 8, "rules": "prefix", "rule_seed": 1}, "data.rule_seed"),
        ({"n_instructions": 4, "budget": 8, "rules": "shuffled"}, "data.rules"),
    ],
)  # fmt: skip
def test_bad_data_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        DataConfig(**kwargs)
    assert str(err.value).startswith(f"{field}:"), str(err.value)


def test_universe_too_small_counts_the_rules() -> None:
    # 8 letters, |x| = |y| = 2: 64 * 64 - 64 = 4032 rules
    held_out = TaskConfig(**SMALL).n_unseen
    DataConfig(n_instructions=4032 - held_out, budget=5000, task=SMALL)
    with pytest.raises(SpecError, match="4032 distinct rules"):
        DataConfig(n_instructions=4032 - held_out + 1, budget=5000, task=SMALL)


def test_eval_cannot_ask_for_more_unseen_rules_than_held_out(tmp_path) -> None:
    cfg = DataConfig(n_instructions=4, budget=8, task={**SMALL, "n_unseen": 10})
    with pytest.raises(SpecError, match=r"^eval.unseen_instructions:"):
        build(cfg, EvalConfig(unseen_instructions=11), tmp_path)


def test_validation_rules_are_held_out_and_apart_from_the_test_rules(tmp_path) -> None:
    task = {**SMALL, "n_unseen": 30}
    cfg = DataConfig(n_instructions=4, budget=8, task=task)
    eval_cfg = EvalConfig(unseen_instructions=20, validation_instructions=10,
                          unseen_examples_per_instruction=3, seen_examples=8)  # fmt: skip
    data = build(cfg, eval_cfg, tmp_path)
    test, val = (
        pa.ipc.open_file(str(p)).read_all() for p in (data.eval_unseen, data.eval_unseen_val)
    )

    def rules_of(table: pa.Table) -> set:
        return set(zip(table["pattern"].to_pylist(), table["replacement"].to_pylist(), strict=True))

    assert len(rules_of(test)) == 20 and len(rules_of(val)) == 10
    assert rules_of(test).isdisjoint(rules_of(val))
    assert set(val["rule_id"].to_pylist()) == set(range(20, 30))
    assert rules_of(val) | rules_of(test) == set(unseen_rules(cfg.task))
    with pytest.raises(
        SpecError, match=r"^eval.validation_instructions: must be <= .* \(10\), got 11"
    ):
        build(cfg, eval_cfg.model_copy(update={"validation_instructions": 11}), tmp_path)


def test_configs_are_frozen_and_yaml_friendly() -> None:
    task = TaskConfig(pattern_length=5, input_length=[10, 12])
    assert task.pattern_length == (5, 5) and task.input_length == (10, 12)
    with pytest.raises(Exception, match="frozen"):
        task.alphabet_size = 3
    cfg = DataConfig(n_instructions=3, examples_per_instruction=7)
    assert cfg.total_examples == 21
