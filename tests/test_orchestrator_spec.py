"""Sweep spec: parsing, grid resolution, search shorthands, and errors that name the field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from divsweep.errors import SpecError, UserError
from divsweep.orchestrator.space import next_n_instructions
from divsweep.orchestrator.spec import load_spec, parse_spec
from divsweep.tracking import absolute_uri
from divsweep.trainer.config import flat_params, trial_key

ROOT = Path(__file__).resolve().parents[1]
DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))

# The reduced rewrite task of shared/PAPER.md at its smallest: trials train in a few seconds.
TINY: dict = {
    "name": "tiny",
    "task": {
        "alphabet_size": 6,
        "pattern_length": 2,
        "replacement_length": 2,
        "input_length": [4, 6],
        "p_pattern_present": 0.8,
        "n_unseen": 32,
    },
    "data": {"n_instructions": [4, 16], "examples_per_instruction": [8], "seeds": [0]},
    "eval": {"seen_examples": 32, "unseen_instructions": 16, "unseen_examples_per_instruction": 2},
    "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "max_len": 32},
    "train": {
        "max_steps": 8,
        "batch_size": 16,
        "warmup_steps": 2,
        "eval_every": 4,
        "eval_batch_size": 64,
    },
    "resources": {"cpu": 1},
}


def tiny_spec(tmp_path: Path, **overrides) -> dict:
    """TINY with `overrides` merged one level deep, storage and cache under tmp_path."""
    spec = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    spec.setdefault("storage_path", str(tmp_path / "ray_results"))
    spec.setdefault("cache_dir", str(tmp_path / "cache"))
    return spec


def write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_smoke_config_has_at_least_eight_trials() -> None:
    spec = load_spec(ROOT / "configs" / "smoke.yaml")
    trials = spec.trials()
    assert len(trials) >= 8
    assert len({t.data.n_instructions for t in trials}) >= 2
    assert len({t.data.examples_per_instruction for t in trials}) >= 2
    assert spec.storage_path.is_absolute()


def test_grid_crosses_every_axis_and_data_configs_are_distinct(tmp_path: Path) -> None:
    raw = tiny_spec(
        tmp_path,
        data={
            "n_instructions": [4, 8],
            "examples_per_instruction": None,
            "budgets": [64, 128],
            "distributions": [{"kind": "uniform"}, {"kind": "powerlaw", "alpha": 0.5}],
            "seeds": [0, 1],
            "p_pattern_present": [1.0, 0.7],
        },
    )
    spec = parse_spec(raw)
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2 * 2 * 2
    # the no-op axis overrides the task's setting and nothing else of it
    assert {t.data.task.p_pattern_present for t in trials} == {1.0, 0.7}
    assert {t.data.task.model_copy(update={"p_pattern_present": 1.0}) for t in trials} == {
        spec.task.model_copy(update={"p_pattern_present": 1.0})
    }
    assert {t.data.budget for t in trials} == {64, 128}
    assert all(t.data.examples_per_instruction is None for t in trials)
    assert {(t.data.distribution, t.data.alpha) for t in trials} == {
        ("uniform", None),
        ("powerlaw", 0.5),
    }
    assert all(t.seed == t.data.seed for t in trials)
    pairs = spec.data_configs()
    assert len(pairs) == len(trials)  # every point differs in its data
    assert len({trial_key(t) for t in trials}) == len(trials)


def test_trial_key_is_stable_and_params_are_flat(tmp_path: Path) -> None:
    a = parse_spec(tiny_spec(tmp_path)).trials()[0]
    b = parse_spec(tiny_spec(tmp_path)).trials()[0]
    assert trial_key(a) == trial_key(b) and len(trial_key(a)) == 16
    params = flat_params(a)
    assert params["data.n_instructions"] == "4"
    assert params["data.total_examples"] == str(4 * 8)
    assert params["model.d_model"] == "32" and params["seed"] == "0"


@pytest.mark.parametrize(
    ("search", "kind"),
    [("grid", "grid"), ({"random": 1}, "random"), ({"kind": "adaptive"}, "adaptive")],
)
def test_search_shorthands(tmp_path: Path, search, kind: str) -> None:
    spec = parse_spec(tiny_spec(tmp_path, search=search))
    assert spec.search.kind == kind
    expected = 1 if kind == "random" else 2
    assert len(spec.first_round()) == expected


def test_random_search_draws_distinct_points_reproducibly(tmp_path: Path) -> None:
    raw = tiny_spec(tmp_path, data={"n_instructions": [2, 4, 8, 16]}, search={"random": 3})
    first, again = parse_spec(raw).first_round(), parse_spec(raw).first_round()
    assert first == again and len({trial_key(t) for t in first}) == 3


def test_adaptive_midpoint_goes_where_accuracy_jumps() -> None:
    acc = {10: 0.0, 100: 0.05, 1000: 0.9, 10000: 0.95}
    assert next_n_instructions(acc, resolution=1.5) == 316
    assert next_n_instructions({100: 0.1, 130: 0.9}, resolution=1.5) is None
    assert next_n_instructions({4: 0.0, 5: 1.0}, resolution=1.1) is None  # no integer between
    assert next_n_instructions({4: 0.0}, resolution=1.5) is None
    assert next_n_instructions({4: 0.0, 64: 0.0, 1024: 0.0}, resolution=1.5) is None  # flat


def test_sqlite_uri_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


BAD_SPECS = [
    ({"data": {"n_instructions": [4, 0]}}, "sweep.data.n_instructions[1]"),
    ({"data": {"examples_per_instruction": None}}, "sweep.data"),
    ({"data": {"distributions": [{"kind": "powerlaw"}]}}, "sweep.data.distributions[0]"),
    ({"scheduler": {"kind": "hyperband"}}, "sweep.scheduler.kind"),
    ({"resources": {"cpu": 1, "gpu": 2}}, "sweep.resources.gpu"),
    ({"search": {"kind": "random"}}, "sweep.search"),
    ({"train": {"max_steps": 8, "batch_sizee": 4}}, "sweep.train.batch_sizee"),
    ({"nme": "x"}, "sweep.nme"),
    ({"data": {"p_pattern_present": [0.5, 1.5]}}, "sweep.data.p_pattern_present[1]"),
    ({"data": {"n_instructions": [4, 10_000]}}, "sweep.data.n_instructions"),
    ({"eval": {"unseen_instructions": 999}}, "sweep.eval.unseen_instructions"),
]


@pytest.mark.parametrize(("override", "field"), BAD_SPECS)
def test_bad_spec_names_the_field(tmp_path: Path, override: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(tiny_spec(tmp_path, **override))
    assert field in str(err.value)


def test_missing_spec_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


# Through the real CLI: one line on stderr naming the field, exit code 2, nothing started.
@pytest.mark.parametrize(
    ("override", "field"),
    [BAD_SPECS[0], BAD_SPECS[4], BAD_SPECS[7], (None, "not found")],
)
def test_cli_run_rejects_bad_spec_with_exit_2(tmp_path: Path, override, field: str) -> None:
    path = (
        tmp_path / "missing.yaml"
        if override is None
        else write_spec(tmp_path, tiny_spec(tmp_path, **override))
    )
    proc = subprocess.run(
        [DIVSWEEP, "run", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlflow.db").exists()
