"""A user's task family named by import path in the spec: built, trained and evaluated with no
divsweep file changed (the family lives in tests/letter_swap_family.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from letter_swap_family import LetterSwapTask

from divsweep.datasets import DataConfig, EvalConfig, attach, build
from divsweep.errors import SpecError

FAMILY = "letter_swap_family:FAMILY"
TASK = {"family": FAMILY, "alphabet_size": 6, "input_length": 8, "n_unseen": 6}


def test_a_family_named_by_import_path_builds_the_usual_files(tmp_path: Path) -> None:
    cfg = DataConfig(task=TASK, n_instructions=20, examples_per_instruction=5)
    assert isinstance(cfg.task, LetterSwapTask) and cfg.task.family == FAMILY
    trial = build(cfg, EvalConfig(seen_examples=40, unseen_instructions=6,
                                  unseen_examples_per_instruction=3), tmp_path)  # fmt: skip
    train, unseen = attach(trial.train).table, attach(trial.eval_unseen).table
    assert train.num_rows == 100 and unseen.num_rows == 18
    for row in train.to_pylist():
        assert row["output"] == row["input"].replace(row["pattern"], row["replacement"])
    trained, held_out = ({*zip(t["pattern"].to_pylist(), t["replacement"].to_pylist(), strict=True)}
                         for t in (train, unseen))  # fmt: skip
    assert len(trained) == 20 and len(held_out) == 6 and not trained & held_out
    assert attach(trial.train).metadata["config"]["data"]["task"]["family"] == FAMILY


@pytest.mark.parametrize(
    ("family", "message"),
    [
        ("letter_swap", "unknown family: built-in are rewrite, semantic"),
        ("no_such_module:FAMILY", "cannot be loaded: No module named 'no_such_module'"),
        ("letter_swap_family:NOPE", "cannot be loaded: module 'letter_swap_family' has no"),
        ("letter_swap_family:LetterSwapTask", "is a class, not a divsweep.datasets.TaskFamily"),
        ("letter_swap_family:string", "is a module, not a divsweep.datasets.TaskFamily"),
    ],
)
def test_a_bad_family_name_is_one_line_naming_the_field(family: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        DataConfig(task={**TASK, "family": family}, n_instructions=2, budget=4)
    assert str(err.value).startswith(f"data.task.family: {message}"), str(err.value)
    assert str(err.value).endswith(f"got {family!r}") and "\n" not in str(err.value)


def test_the_familys_own_checks_name_their_fields() -> None:
    with pytest.raises(SpecError, match=r"^data.task.input_length: "):
        DataConfig(task={**TASK, "input_length": 0}, n_instructions=2, budget=4)
    with pytest.raises(SpecError, match=r"^data.n_instructions: .* 30 letter pairs"):
        DataConfig(task=TASK, n_instructions=25, budget=50)


def test_divsweep_train_runs_the_users_family(tmp_path: Path, tracking_uri: str) -> None:
    trial = {
        "data": {"task": TASK, "n_instructions": 20, "examples_per_instruction": 5},
        "eval": {"seen_examples": 20, "unseen_instructions": 6,
                 "unseen_examples_per_instruction": 2},
        "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "max_len": 32},
        "train": {"max_steps": 10, "eval_every": 10, "batch_size": 8, "num_threads": 1},
    }  # fmt: skip
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(trial))
    divsweep = str(Path(sys.executable).with_name("divsweep"))
    cmd = [divsweep, "train", str(path), "--tracking-uri", tracking_uri, "--workdir", str(tmp_path)]
    # the user's package only has to be importable, here from the tests folder
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent),
           "DIVSWEEP_CACHE": str(tmp_path / "cache")}  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unseen/exact_match" in done.stdout
