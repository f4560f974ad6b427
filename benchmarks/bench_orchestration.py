"""Orchestration overhead: 100 short trials run by divsweep vs the same work by a bare Tuner.

`python -m benchmarks bench_orchestration`. In one process, on one local Ray (2 CPUs, one
trial per CPU): (a) a bare `tune.Tuner` whose plain function trainable trains each trial and
reports metrics + checkpoint at every evaluation, no tracking; (b) `divsweep.run` on the same
trials (spec, MLflow parent and child runs in an existing SQLite store, status tags, progress
display off);
(c) the floor: the same trials one after another in this process, no Ray at all.
Datasets are built before any timing; every side reads the same cache. (a) and (b) run three
times each, in the order a b b a a b, and the best time of each counts (this machine's
spikes, a run taking 1.3-1.8x its usual time, hit either side).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

import divsweep
from benchmarks.results_table import record
from divsweep import tracking
from divsweep.datasets import build, build_all
from divsweep.orchestrator.spec import SweepSpec, parse_spec
from divsweep.trainer.config import TrialConfig
from divsweep.trainer.fit import fit

N_TRIALS = 100
CPUS = 2


def bench_spec(root: Path) -> SweepSpec:
    """100 trials (10 instruction counts x 10 seeds), each 4 optimizer steps + 1 evaluation."""
    return parse_spec(
        {
            "name": "bench-orchestration",
            "data": {
                "task": {
                    "alphabet_size": 6,
                    "pattern_length": 2,
                    "replacement_length": 2,
                    "input_length": [4, 6],
                    "n_unseen": 32,
                },
                "examples_per_instruction": 8,
            },
            "axes": {
                "data.n_instructions": [2, 3, 4, 5, 6, 8, 10, 12, 14, 16],
                "seed": list(range(10)),
            },
            "eval": {
                "seen_examples": 16,
                "unseen_instructions": 8,
                "unseen_examples_per_instruction": 2,
            },
            "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "max_len": 32},
            "train": {"max_steps": 4, "batch_size": 8, "warmup_steps": 1, "eval_every": 4},
            "resources": {"cpu": 1},
            "storage_path": str(root / "divsweep"),
            "cache_dir": str(root / "cache"),
        }
    )


def bare_trial(config: dict) -> None:
    """The same training, as a plain Tune function: no spec, no MLflow, no status."""
    trial = TrialConfig.model_validate(config["trial"])
    torch.set_num_threads(1)
    data = build(trial.data, trial.eval, Path(config["cache_dir"]))

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        ckpt = None if checkpoint_dir is None else tune.Checkpoint.from_directory(checkpoint_dir)
        tune.report(metrics, checkpoint=ckpt)

    with tempfile.TemporaryDirectory() as workdir:
        fit(trial, data, report=report, workdir=Path(workdir), accelerator="cpu")


def run_bare(spec: SweepSpec, root: Path, name: str) -> float:
    trials = [t.model_dump(mode="json") for t in spec.trials()]
    tuner = tune.Tuner(
        tune.with_resources(bare_trial, {"cpu": 1}),
        param_space={"trial": tune.grid_search(trials), "cache_dir": str(spec.cache_dir)},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(root / "bare"),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    elapsed = time.perf_counter() - start
    assert grid.num_terminated == N_TRIALS, grid.errors
    return elapsed


def create_store(uri: str) -> float:
    """MLflow creates a SQLite store's tables once, on first use (seconds: dozens of schema
    migrations); every later sweep finds them. Timed apart from the sweep, and reported."""
    start = time.perf_counter()
    tracking.experiment_id(tracking.client(uri), "bench-orchestration")
    return time.perf_counter() - start


def run_divsweep(spec: SweepSpec, uri: str) -> float:
    start = time.perf_counter()
    sweep = divsweep.run(spec, tracking_uri=uri, progress=False)
    elapsed = time.perf_counter() - start
    assert not sweep.interrupted
    return elapsed


def run_sequential(spec: SweepSpec) -> float:
    torch.set_num_threads(1)
    start = time.perf_counter()
    for trial in spec.trials():
        data = build(trial.data, trial.eval, spec.cache_dir)
        with tempfile.TemporaryDirectory() as workdir:
            fit(trial, data, report=None, workdir=Path(workdir), accelerator="cpu")
    return time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)  # no per-trial warnings from either side
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        root = Path(tmp)
        spec = bench_spec(root)
        assert len(spec.trials()) == N_TRIALS
        build_all(spec.data_configs(), cache_dir=spec.cache_dir, progress=False)
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
        try:
            uri = f"sqlite:///{root / 'mlflow.db'}"
            store = create_store(uri)
            # neither side always runs first, or always after the other
            bare, ours = [], []
            for i, side in enumerate("abbaab"):
                if side == "a":
                    bare.append(run_bare(spec, root, f"bare-{i}"))
                else:
                    ours.append(run_divsweep(spec, uri))
            # every run, not only the best: a spike shows here
            print("bare Tuner runs (s):", " ".join(f"{t:.2f}" for t in bare))
            print("divsweep runs (s):  ", " ".join(f"{t:.2f}" for t in ours))
            bare, ours = min(bare), min(ours)
        finally:
            ray.shutdown()
        floor = run_sequential(spec)
    record(
        "orchestration",
        {
            "orchestration.divsweep_over_bare_tune": (ours / bare, "<= 1.2"),
            "orchestration.overhead_per_trial_s": ((ours - bare) / N_TRIALS, ""),
            "orchestration.divsweep_s_per_trial": (ours / N_TRIALS, ""),
            "orchestration.bare_tune_s_per_trial": (bare / N_TRIALS, ""),
            "orchestration.sequential_s_per_trial": (floor / N_TRIALS, ""),
            "orchestration.divsweep_over_sequential": (ours / floor, ""),
            "orchestration.mlflow_store_creation_s": (store, ""),
        },
    )


if __name__ == "__main__":
    main()
