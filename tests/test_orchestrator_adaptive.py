"""Adaptive search as a Tune Searcher: the grid first, then midpoints along one axis per group
of the other axes, decided from trial results inside one Tuner; its state survives restore."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import ray.cloudpickle
from ray import tune
from test_orchestrator_spec import tiny_spec

from divsweep.orchestrator import search
from divsweep.orchestrator.search import AdaptiveSearch
from divsweep.orchestrator.spec import parse_spec
from divsweep.orchestrator.tuner import make_tuner

# what the searcher reads unless a spec says otherwise: the held-out validation rules
METRIC = "unseen_val/exact_match"
# a known transition per budget: accuracy steps from 0 to 1 at this many instructions
TRANSITION = {256: 11, 1024: 45}


def adaptive_spec(tmp_path: Path, name: str = "adaptive", **search_settings):
    raw = tiny_spec(
        tmp_path,
        name=name,
        data={"examples_per_instruction": None},
        search={"kind": "adaptive", "resolution": 1.5, "max_trials": 60, **search_settings},
    )
    raw["axes"] = {"data.n_instructions": [2, 8, 32, 128], "data.budget": list(TRANSITION)}
    return parse_spec(raw)


def step_score(trial: dict) -> float:
    """The synthetic trial's selection metric: 0 below its budget's transition, 1 from it on."""
    data = trial["data"]
    return float(data["n_instructions"] >= TRANSITION[data["budget"]])


def drive(
    searcher: AdaptiveSearch, running: dict | None = None, stop_after: int | None = None
) -> tuple[list[dict], dict]:
    """Play Tune's part: take every suggestion, complete each with its step score, until the
    searcher says FINISHED (or `stop_after` completions: then the trials still running are
    returned too, as Tune keeps them to run again after a restore)."""
    running, done = dict(running or {}), []
    n = len(searcher.issued)
    while True:
        while (config := searcher.suggest(f"t{n}")) not in (None, tune.search.Searcher.FINISHED):
            running[f"t{n}"] = config["trial"]
            n += 1
        if config == tune.search.Searcher.FINISHED or not running:
            return done, running
        trial_id, trial = running.popitem()
        searcher.on_trial_complete(trial_id, {METRIC: step_score(trial)})
        done.append(trial)
        if stop_after is not None and len(done) >= stop_after:
            return done, running


def brackets(trials: list[dict]) -> dict[int, tuple[int, int]]:
    """Per budget: the largest n that scored 0 and the smallest that scored 1."""
    out = {}
    for budget in TRANSITION:
        ns = [(t["data"]["n_instructions"], step_score(t)) for t in trials]
        ns = [(n, s) for (n, s), t in zip(ns, trials, strict=True) if t["data"]["budget"] == budget]
        out[budget] = (max(n for n, s in ns if s == 0), min(n for n, s in ns if s == 1))
    return out


def test_each_budget_brackets_its_own_transition(tmp_path: Path) -> None:
    spec = adaptive_spec(tmp_path)
    assert spec.selection.metric == METRIC  # the default: never the test rules
    trials, _ = drive(search.make_searcher(spec))
    for budget, (lo, hi) in brackets(trials).items():
        assert lo < TRANSITION[budget] <= hi
        assert hi / lo <= 1.5 or hi - lo == 1, (budget, lo, hi)
    # far fewer trials than a grid at that resolution (ratio 1.5 from 2 to 128, per budget)
    full_grid = 2 * math.ceil(math.log(128 / 2) / math.log(1.5))
    assert len(trials) < full_grid
    assert len({(t["data"]["n_instructions"], t["data"]["budget"]) for t in trials}) == len(trials)


def test_seeds_are_averaged_and_each_midpoint_gets_every_seed(tmp_path: Path) -> None:
    raw = adaptive_spec(tmp_path).model_dump(mode="json")
    raw["axes"] = {"data.n_instructions": [2, 32], "data.budget": [256], "seed": [0, 1]}
    searcher = search.make_searcher(parse_spec(raw))
    trials, _ = drive(searcher)
    ns = sorted({t["data"]["n_instructions"] for t in trials})
    assert 8 in ns and len(ns) > 3  # sqrt(2 * 32) = 8 first, then on towards 11
    for n in ns:
        assert sorted(t["seed"] for t in trials if t["data"]["n_instructions"] == n) == [0, 1]


def test_max_trials_caps_the_search(tmp_path: Path) -> None:
    spec = adaptive_spec(tmp_path, max_trials=10)
    trials, _ = drive(search.make_searcher(spec))
    assert 8 <= len(trials) <= 10  # the grid (8) and what fits of the refinements


def test_state_survives_save_and_restore(tmp_path: Path) -> None:
    spec = adaptive_spec(tmp_path)
    whole, _ = drive(search.make_searcher(spec))

    first = search.make_searcher(spec)
    part, running = drive(first, stop_after=9)
    assert running  # stopped with trials part-way
    first.save_to_dir(str(tmp_path))
    second = search.make_searcher(spec)
    second.restore_from_dir(str(tmp_path))
    assert not second.done
    rest, _ = drive(second, running)
    # nothing handed out twice, nothing lost: the same trials as one uninterrupted search
    key = lambda t: (t["data"]["n_instructions"], t["data"]["budget"])  # noqa: E731
    assert sorted(map(key, part + rest)) == sorted(map(key, whole))
    assert second.done


def known_transition(config: dict) -> None:
    """A cheap trainable run through the real Tuner: the step score plus noise too small to
    move it across 0.5, reported as one evaluation."""
    trial = config["trial"]
    noise = 0.05 * math.sin(trial["data"]["n_instructions"])
    tune.report({METRIC: step_score(trial) + noise, "step": 1})


def test_one_tuner_runs_the_whole_adaptive_search(ray_session, tmp_path: Path) -> None:
    # Ray workers cannot import this test module: its trainable travels by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec = adaptive_spec(tmp_path, name="adaptive-tuner")
    tuner = make_tuner(spec, {}, tmp_path / "tune", "trials", [], function=known_transition)
    grid = tuner.fit()
    trials = [r.config["trial"] for r in grid]
    assert grid.num_errors == 0 and len(trials) > 8  # the grid, then refinements
    for budget, (lo, hi) in brackets(trials).items():
        assert lo < TRANSITION[budget] <= hi and hi / lo <= 1.5
    # the saved searcher (Tune's restore path) says the search is over
    assert search.finished(spec, str(tmp_path / "tune" / "trials"))
