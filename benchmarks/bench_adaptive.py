"""Adaptive search vs a grid, on trials with a known transition point.

A cheap synthetic trainable (a smooth step in n_instructions at a known point per budget, plus
Gaussian noise) runs through the real Tuner with the sweep's AdaptiveSearch, for REPS seeded
repetitions, each with its own transition points. Figures: trials adaptive search needed to
bracket both budgets' transitions to a ratio of RESOLUTION, divided by the trials of a full
grid at that resolution over the same range (goal <= 0.5), and the rate at which the final
bracket holds the true point.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import ray
import ray.cloudpickle
from ray import tune

from benchmarks.results_table import record
from divsweep.orchestrator.spec import Selection, SweepSpec, parse_spec
from divsweep.orchestrator.tuner import make_tuner

REPS = 20
RANGE = (2, 512)  # the grid's ends; transitions are drawn inside
BUDGETS = (1024, 4096)
RESOLUTION = 1.5
NOISE = 0.05
METRIC = Selection().metric  # what the search reads by default (validation rules)


def score(n: int, transition: float, noise: float) -> float:
    """A smooth step from 0 to 1 around `transition` (0.04 / 0.96 at a ratio of 1.5 below /
    above: the paper's transitions are about this sharp), plus noise."""
    return 1 / (1 + (transition / n) ** 8) + noise


def synthetic_trial(config: dict) -> None:
    data = config["trial"]["data"]
    n, budget = data["n_instructions"], data["budget"]
    rep = config["divsweep"]
    transition = rep["transitions"][str(budget)]
    rng = np.random.default_rng([rep["seed"], n, budget])
    tune.report({METRIC: score(n, transition, rng.normal(0, NOISE)), "step": 1})


def bench_spec(root: Path, rep: int) -> SweepSpec:
    return parse_spec(
        {
            "name": f"bench-adaptive-{rep}",
            "data": {
                "task": {
                    "alphabet_size": 8,
                    "pattern_length": 2,
                    "replacement_length": 2,
                    "input_length": [4, 6],
                    "n_unseen": 32,
                },
            },  # fmt: skip
            "eval": {"seen_examples": 8, "unseen_instructions": 8},
            "train": {"max_steps": 1},
            "axes": {"data.n_instructions": list(RANGE), "data.budget": list(BUDGETS)},
            "search": {"kind": "adaptive", "resolution": RESOLUTION, "max_trials": 64},
            "resources": {"cpu": 1},
            "storage_path": str(root),
        }
    )


def grid_size() -> int:
    """Points of a grid over RANGE with neighbours at most RESOLUTION apart, both budgets."""
    lo, hi = RANGE
    return len(BUDGETS) * (math.ceil(math.log(hi / lo) / math.log(RESOLUTION)) + 1)


def bracket(results: dict[int, float]) -> tuple[int, int]:
    """The final bracket: the adjacent pair with the largest change (the searcher's rule)."""
    ns = sorted(results)
    return max(zip(ns, ns[1:], strict=False), key=lambda p: abs(results[p[1]] - results[p[0]]))


def run_rep(root: Path, rep: int) -> tuple[int, int, int]:
    """(trials run, budgets bracketed within RESOLUTION, brackets holding the true point)."""
    rng = np.random.default_rng(rep)
    lo, hi = RANGE
    transitions = {str(b): float(math.exp(rng.uniform(math.log(lo * 2), math.log(hi / 2))))
                   for b in BUDGETS}  # fmt: skip
    spec = bench_spec(root, rep)
    context = {"seed": rep, "transitions": transitions}
    grid = make_tuner(spec, context, root, f"rep{rep}", [], function=synthetic_trial).fit()
    by_budget: dict[int, dict[int, float]] = {}
    for result in grid:
        data = result.config["trial"]["data"]
        by_budget.setdefault(data["budget"], {})[data["n_instructions"]] = result.metrics[METRIC]
    tight = holds = 0
    for budget, results in by_budget.items():
        a, b = bracket(results)
        tight += b / a <= RESOLUTION or b - a == 1  # no integer left between
        holds += a < transitions[str(budget)] <= b
    return len(grid), tight, holds


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    # Ray workers import the package, not this file's folder: the trainable travels by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as tmp:
            reps = [run_rep(Path(tmp), rep) for rep in range(REPS)]
    finally:
        ray.shutdown()
    trials = [t for t, _, _ in reps]
    print("adaptive trials per repetition:", " ".join(map(str, trials)))
    brackets = REPS * len(BUDGETS)
    record(
        "adaptive",
        {
            "adaptive.trials_over_grid": (sum(trials) / REPS / grid_size(), "<= 0.5"),
            "adaptive.mean_trials": (sum(trials) / REPS, ""),
            "adaptive.grid_trials": (grid_size(), ""),
            "adaptive.bracketed_rate": (sum(t for _, t, _ in reps) / brackets, ">= 0.95"),
            "adaptive.bracket_holds_true_point_rate": (
                sum(h for _, _, h in reps) / brackets,
                ">= 0.9",
            ),
        },
    )


if __name__ == "__main__":
    main()
