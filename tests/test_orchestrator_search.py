"""Search through Tune: a grid over any settings runs every point with its params in MLflow;
random search draws inside the bounds, reproducibly; Optuna's TPE runs `num_samples` trials
under `max_concurrent_trials` and beats random search on a cheap deterministic objective."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import ray.cloudpickle
from conftest import trial_runs
from ray import tune
from test_orchestrator_spec import tiny_spec

import divsweep
from divsweep.orchestrator import search
from divsweep.orchestrator.space import random_points
from divsweep.orchestrator.spec import parse_spec
from divsweep.orchestrator.tuner import make_tuner

METRIC = "unseen_val/exact_match"  # the default selection metric
BOUNDS = {"train.lr": {"loguniform": [1e-5, 1e-1]}, "model.dropout": {"uniform": [0.0, 0.9]}}


def objective(trial: dict) -> float:
    """Peaks (0) at lr 1e-3, dropout 0.3; smooth, so a model of it pays off."""
    lr, dropout = trial["train"]["lr"], trial["model"]["dropout"]
    return -((math.log10(lr) + 3) ** 2) - 4 * (dropout - 0.3) ** 2


def cheap_trial(config: dict) -> None:
    """A Tune function trainable over the same resolved trial configs: one evaluation."""
    tune.report({METRIC: objective(config["trial"]), "step": 1})


def sampled_spec(tmp_path: Path, kind: str, n: int, seed: int = 0, **settings):
    raw = tiny_spec(tmp_path, search={"kind": kind, "num_samples": n, "seed": seed}, **settings)
    raw["axes"] = {"data.n_instructions": [4], **BOUNDS}
    return parse_spec(raw)


def best_of(searcher) -> float:
    """Run a searcher to its end, one trial at a time (as max_concurrent_trials=1 would)."""
    best, n = -math.inf, 0
    while isinstance(config := searcher.suggest(f"t{n}"), dict):
        score = objective(config["trial"])
        searcher.on_trial_complete(f"t{n}", {METRIC: score})
        best, n = max(best, score), n + 1
    return best


def test_grid_over_lr_and_width_runs_every_point(ray_session, tmp_path: Path, tracking_uri: str):
    raw = tiny_spec(tmp_path, name="grid-lr-width")
    raw["axes"] = {"train.lr": [3e-4, 1e-3], "model.d_model": [32, 64], "data.n_instructions": [4]}
    sweep = divsweep.run(parse_spec(raw), tracking_uri=tracking_uri, progress=False)
    assert not sweep.interrupted
    runs = trial_runs(tracking_uri, "grid-lr-width")
    got = sorted((r.data.params["train.lr"], r.data.params["model.d_model"]) for r in runs)
    assert got == [("0.0003", "32"), ("0.0003", "64"), ("0.001", "32"), ("0.001", "64")]
    assert {r.data.tags["divsweep.status"] for r in runs} == {"finished"}
    # everything the axes do not set is the template's
    assert {r.data.params["train.max_steps"] for r in runs} == {"8"}


def test_random_search_through_tune_draws_the_seeded_values(ray_session, tmp_path: Path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import us
    spec = sampled_spec(tmp_path, "random", 6, seed=3)
    grid = make_tuner(spec, {}, tmp_path, "random", [], function=cheap_trial).fit()
    drawn = sorted(r.config["trial"]["train"]["lr"] for r in grid)
    assert drawn == sorted(p["train.lr"] for p in random_points(spec))  # same seed, same values
    assert all(1e-5 <= lr <= 1e-1 for lr in drawn) and len(set(drawn)) == 6
    assert search.finished(spec, str(tmp_path / "random"))


def test_optuna_runs_num_samples_under_the_concurrency_cap(ray_session, tmp_path: Path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec = sampled_spec(tmp_path, "optuna", 12, max_concurrent_trials=2)
    grid = make_tuner(spec, {}, tmp_path, "optuna", [], function=cheap_trial).fit()
    assert len(grid) == 12 and grid.num_errors == 0
    for result in grid:
        trial = result.config["trial"]
        assert 1e-5 <= trial["train"]["lr"] <= 1e-1 and 0 <= trial["model"]["dropout"] <= 0.9
    # the saved study (Tune's restore path) holds every trial: nothing left to run
    assert search.finished(spec, str(tmp_path / "optuna"))


def test_optuna_beats_random_over_seeds(tmp_path: Path) -> None:
    seeds = range(5)
    optuna = [best_of(search.make_searcher(sampled_spec(tmp_path, "optuna", 40, s))) for s in seeds]
    rand = [best_of(search.make_searcher(sampled_spec(tmp_path, "random", 40, s))) for s in seeds]
    assert sum(optuna) / len(optuna) > sum(rand) / len(rand)
    assert sum(o > r for o, r in zip(optuna, rand, strict=True)) >= 4


@pytest.mark.parametrize("kind", ["random", "optuna"])
def test_sampling_searches_resume_where_they_stopped(tmp_path: Path, kind: str) -> None:
    spec = sampled_spec(tmp_path, kind, 10)
    whole = search.make_searcher(spec)
    expected = [whole.suggest(f"t{i}")["trial"] for i in range(10)]
    first = search.make_searcher(spec)
    for i in range(4):
        trial = first.suggest(f"t{i}")["trial"]
        if kind == "random" or i < 3:  # one left running when the driver dies
            first.on_trial_complete(f"t{i}", {METRIC: objective(trial)})
    first.save_to_dir(str(tmp_path))
    second = search.make_searcher(spec)
    second.restore_from_dir(str(tmp_path))
    assert not second.done
    rest = []
    while isinstance(config := second.suggest(f"t{4 + len(rest)}"), dict):
        rest.append(config["trial"])
    assert len(rest) == 6  # ten in all: none handed out twice, none lost
    if kind == "random":
        assert rest == expected[4:]  # the same draws as one uninterrupted search
