"""Sweep spec: parsing, axes over dotted paths, grid resolution, search shorthands, and errors
that name the field (and the point)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from divsweep.datasets.config import validation_size
from divsweep.errors import SpecError, UserError
from divsweep.orchestrator.space import next_midpoint
from divsweep.orchestrator.spec import load_spec, parse_spec
from divsweep.orchestrator.tuner import scheduler
from divsweep.tracking import absolute_uri
from divsweep.trainer.config import flat_params, trial_key

ROOT = Path(__file__).resolve().parents[1]
DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))

# The reduced rewrite task of shared/PAPER.md at its smallest: trials train in a few seconds.
TINY: dict = {
    "name": "tiny",
    "data": {
        "task": {
            "alphabet_size": 6,
            "pattern_length": 2,
            "replacement_length": 2,
            "input_length": [4, 6],
            "p_pattern_present": 0.8,
            "n_unseen": 32,
        },
        "examples_per_instruction": 8,
    },
    "axes": {"data.n_instructions": [4, 16]},
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
    return merged_spec(TINY, tmp_path, **overrides)


def merged_spec(base: dict, tmp_path: Path, **overrides) -> dict:
    """`base` with `overrides` merged one level deep, storage and cache under tmp_path."""
    spec = copy.deepcopy(base)
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
    assert Path(spec.storage_path).is_absolute()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_validates(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    if "name" in raw:  # a sweep spec (the rest are single-trial configs for `divsweep train`)
        assert load_spec(path).trials()
    else:
        from divsweep.trainer.config import load_trial_config

        load_trial_config(path)


def test_grid_crosses_every_axis_and_data_configs_are_distinct(tmp_path: Path) -> None:
    raw = tiny_spec(tmp_path, data={"examples_per_instruction": None})
    raw["axes"] = {
        "data.n_instructions": [4, 8],
        "data.budget": [64, 128],
        "data.distribution": ["uniform", {"kind": "powerlaw", "alpha": 0.5}],
        "seed": [0, 1],
        "data.task.p_pattern_present": [1.0, 0.7],
    }
    spec = parse_spec(raw)
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2 * 2 * 2
    # the no-op axis overrides the task's setting and nothing else of it
    assert {t.data.task.p_pattern_present for t in trials} == {1.0, 0.7}
    assert len({t.data.task.model_copy(update={"p_pattern_present": 1.0}) for t in trials}) == 1
    assert {t.data.budget for t in trials} == {64, 128}
    assert all(t.data.examples_per_instruction is None for t in trials)
    assert {(t.data.distribution, t.data.alpha) for t in trials} == {
        ("uniform", None),
        ("powerlaw", 0.5),
    }
    assert {t.seed for t in trials} == {0, 1} and all(t.seed == t.data.seed for t in trials)
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


def test_axes_reach_any_setting(tmp_path: Path) -> None:
    raw = tiny_spec(tmp_path)
    raw["axes"] = {
        "train.lr": [3e-4, 1e-3],
        "model.d_model": [32, 64],
        "data.task.pattern_length": [2, 3],
        "data.n_instructions": [4],
    }
    trials = parse_spec(raw).trials()
    got = {(t.train.lr, t.model.d_model, t.data.task.pattern_length) for t in trials}
    assert got == {(lr, d, (p, p)) for lr in (3e-4, 1e-3) for d in (32, 64) for p in (2, 3)}
    # everything else is the template's
    assert {
        (t.train.max_steps, t.model.n_layers, t.data.examples_per_instruction) for t in trials
    } == {(8, 1, 8)}


@pytest.mark.parametrize(
    ("search", "kind"),
    [("grid", "grid"), ({"random": 3}, "random"), ({"optuna": 4}, "optuna"),
     ({"kind": "adaptive"}, "adaptive")],
)  # fmt: skip
def test_search_shorthands(tmp_path: Path, search, kind: str) -> None:
    spec = parse_spec(tiny_spec(tmp_path, search=search))
    assert spec.search.kind == kind
    assert spec.search.num_samples == {"random": 3, "optuna": 4}.get(kind)


def test_random_search_draws_inside_the_bounds_reproducibly(tmp_path: Path) -> None:
    from divsweep.orchestrator.space import random_points

    raw = tiny_spec(tmp_path, search={"kind": "random", "num_samples": 20, "seed": 7})
    raw["axes"] = {**raw["axes"], "train.lr": {"loguniform": [1e-4, 1e-2]}}
    first, again = random_points(parse_spec(raw)), random_points(parse_spec(raw))
    assert first == again and len(first) == 2 * 20  # 20 draws per grid point
    lrs = [p["train.lr"] for p in first]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == len(lrs)
    # log-uniform: about half the draws below the geometric middle (1e-3), not ~10%
    assert 10 <= sum(lr < 1e-3 for lr in lrs) <= 30
    other = random_points(parse_spec({**raw, "search": {**raw["search"], "seed": 8}}))
    assert [p["train.lr"] for p in other] != lrs


def test_adaptive_midpoint_goes_where_accuracy_jumps() -> None:
    acc = {10: 0.0, 100: 0.05, 1000: 0.9, 10000: 0.95}
    assert next_midpoint(acc, resolution=1.5) == 316
    assert next_midpoint({100: 0.1, 130: 0.9}, resolution=1.5) is None
    assert next_midpoint({4: 0.0, 5: 1.0}, resolution=1.1) is None  # no integer between
    assert next_midpoint({4: 0.0, 5: 1.0}, resolution=1.1, integer=False) == pytest.approx(20**0.5)
    assert next_midpoint({4: 0.0}, resolution=1.5) is None
    assert next_midpoint({4: 0.0, 64: 0.0, 1024: 0.0}, resolution=1.5) is None  # flat


def test_sqlite_uri_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


BAD_SPECS = [
    ({"axes": {"data.n_instructions": [4, 0]}}, "sweep.axes.data.n_instructions: "),
    ({"data": {"examples_per_instruction": None}}, "sweep.data.budget"),
    ({"axes": {"data.distribution": [{"kind": "powerlaw"}]}}, "sweep.data.alpha"),
    ({"scheduler": {"kind": "hyperband"}}, "sweep.scheduler.kind"),
    ({"resources": {"cpu": 1, "gpu": 2}}, "sweep.resources.gpu"),
    ({"search": {"kind": "random"}}, "sweep.search"),
    ({"train": {"max_steps": 8, "batch_sizee": 4}}, "sweep.train.batch_sizee"),
    ({"nme": "x"}, "sweep.nme"),
    ({"axes": {"data.task.p_pattern_present": [0.5, 1.5]}}, "data.task.p_pattern_present=1.5"),
    ({"axes": {"data.n_instructions": [4, 10_000]}}, "data.n_instructions=10000"),
    ({"eval": {"unseen_instructions": 999}}, "sweep.eval.unseen_instructions"),
    ({"eval": {"validation_instructions": 17}}, "sweep.eval.validation_instructions: must be <="),
    # every held-out rule a test rule: nothing to select on by default
    ({"eval": {"unseen_instructions": 32}}, "sweep.selection.metric: unseen_val/exact_match needs"),
    ({"axes": {"train.lrr": [1e-3]}}, "sweep.axes.train.lrr: unknown setting; train has: lr,"),
    ({"axes": {"data.task": [{}]}}, "sweep.axes.data.task: a section"),
    ({"axes": {"train.lr": ["fast"]}}, "sweep.axes.train.lr: Input should be a valid number"),
    ({"axes": {"train.lr": {"loguniform": [0, 1]}}}, "sweep.axes.train.lr.loguniform"),
    ({"axes": {"train.lr": {"gaussian": [0, 1]}}}, "sweep.axes.train.lr: expected a list"),
    ({"axes": {"model.dropout": {"uniform": [0.0, 1.5]}}, "search": {"random": 2}}, "dropout=1.5"),
    ({"axes": {"train.lr": {"uniform": [1e-3, 1e-2]}}}, "needs search random or optuna"),
    ({"axes": {"data.n_instructions": []}}, "sweep.axes.data.n_instructions: an axis needs"),
    ({"data": {"n_instructions": [4, 8]}}, "sweep.data.n_instructions: a list in the template"),
    ({"search": {"kind": "adaptive", "axis": "train.lr"}}, "sweep.search.axis"),
    ({"search": {"kind": "adaptive", "max_trials": 1}}, "sweep.search.max_trials"),
    # the old format says where each key went
    ({"task": {"alphabet_size": 6}}, "sweep.task: this spec format is gone; use data.task"),
    ({"data": {"seeds": [0, 1]}}, "sweep.data.seeds: this spec format is gone; use an axis `seed"),
    ({"scheduler": {"metric": "seen/exact_match"}}, "use selection.metric"),
]


@pytest.mark.parametrize(("override", "field"), BAD_SPECS)
def test_bad_spec_names_the_field(tmp_path: Path, override: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(tiny_spec(tmp_path, **override))
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_asha_and_searches_read_the_validation_rules_by_default(tmp_path: Path) -> None:
    spec = parse_spec(tiny_spec(tmp_path, scheduler={"kind": "asha"}))
    assert spec.selection.metric == "unseen_val/exact_match"
    assert scheduler(spec).metric == "unseen_val/exact_match"
    [trial] = spec.trials()[:1]
    assert trial.eval.validation_instructions is None  # resolved from the pool: 32 - 16
    assert validation_size(trial.data.task, trial.eval) == 16


def test_a_failing_grid_point_is_named_with_its_axis_values(tmp_path: Path) -> None:
    raw = tiny_spec(tmp_path, axes={"seed": [0, 1]})
    raw["axes"]["data.n_instructions"] = [4, 10_000]
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert str(err.value).startswith(
        "sweep.axes.data.n_instructions: n_instructions + task.n_unseen"
    )
    assert str(err.value).endswith("(at data.n_instructions=10000, seed=0)")


def test_missing_spec_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


# Through the real CLI: one line on stderr naming the field, exit code 2, nothing started.
@pytest.mark.parametrize(
    ("override", "field"),
    [BAD_SPECS[0], BAD_SPECS[4], BAD_SPECS[7], BAD_SPECS[11], (None, "not found")],
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


def test_readme_spec_example_validates(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = readme.split("A sweep spec is", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    raw = {**yaml.safe_load(example), "storage_path": str(tmp_path)}
    spec = parse_spec(raw)
    assert len(spec.trials()) == 4 * 2 * 2 * 2 * 2
