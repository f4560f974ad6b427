"""Scale: a 1,000-trial sweep of near-empty trials through `divsweep.run` on fake GPUs.

`python -m benchmarks bench_scale` (or `python -m benchmarks.bench_scale [N_TRIALS]`).
Two Ray nodes in this process's machine (`ray.cluster_utils.Cluster`: a head and one more node),
each declaring 8 GPUs (logical: Ray hands out GPU ids, torch sees no CUDA and trains on CPU) and
4 logical CPUs. Each trial asks for 0.25 GPU and 0.1 CPU, so the GPUs bound packing at
2 x 8 / 0.25 = 64 trials at once; `MAX_CONCURRENT` caps it below that: every Tune actor is a
Python process with torch and Lightning imported (~0.5 GB PSS measured), and on a 2-core box
more slots only add contention (16 slots: 40 trials took 94 s, mostly 16 actors importing torch
at once; 8 slots: 200 trials in 63 s).

The trials are real ones, as small as the spec allows: one optimizer step on a few examples of
a one-layer, 8-wide model, one evaluation, each its own MLflow child run in a SQLite store.
Datasets are built before the timed sweep (`divsweep.run` then finds every one in the cache).

Figures:
- wall time of `divsweep.run` and wall / trials; also the span from the first MLflow run
  opened to the last one closed, / trials (the sweep without its actors starting up);
- achieved concurrency: the most MLflow child runs open at one instant (sweep over their
  start/end times), and the mean (total run time / wall);
- per-trial scheduling overhead = wall x achieved concurrency / trials - mean trial work time,
  where the work time of a trial is its MLflow run's end - start (the worker opened the run,
  trained, evaluated, logged, closed it). It is the slot time a trial costs beyond its own
  work: Tune scheduling, actor reset, data attach, results and checkpoint handling (and, with
  the whole wall, the actors starting up: the same with the span from the first run opened to
  the last one closed is the steady-state figure);
- CPU seconds per trial of the whole stack (driver, Ray nodes, workers), against the floor:
  the same trial's `fit` alone in this process (first 50 trials), no Ray, no MLflow;
- the MLflow child runs under the parent: exactly `N_TRIALS`, all finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

N_TRIALS = 1000
NODES, GPUS_PER_NODE, CPUS_PER_NODE = 2, 8, 4
GPU_PER_TRIAL, CPU_PER_TRIAL = 0.25, 0.1
MAX_CONCURRENT = 8


def scale_spec(root: Path, n_trials: int, max_concurrent: int):
    """`n_trials` near-empty trials: 10 instruction counts x n_trials / 10 seeds."""
    from divsweep.orchestrator.spec import parse_spec

    if n_trials % 10:
        raise ValueError(f"n_trials must be a multiple of 10, got {n_trials}")
    return parse_spec(
        {
            "name": "bench-scale",
            "data": {
                "task": {
                    "alphabet_size": 6,
                    "pattern_length": 2,
                    "replacement_length": 2,
                    "input_length": [4, 6],
                    "n_unseen": 4,
                },
                "examples_per_instruction": 2,
            },
            "axes": {
                "data.n_instructions": list(range(1, 11)),
                "seed": list(range(n_trials // 10)),
            },
            "eval": {
                "seen_examples": 2,
                "unseen_instructions": 2,
                "unseen_examples_per_instruction": 1,
            },
            "model": {"n_layers": 1, "d_model": 8, "n_heads": 1, "max_len": 32},
            "train": {
                "max_steps": 1,
                "batch_size": 2,
                "warmup_steps": 0,
                "eval_every": 1,
                "eval_batch_size": 4,
            },
            "resources": {"cpu": CPU_PER_TRIAL, "gpu": GPU_PER_TRIAL},
            "max_concurrent_trials": max_concurrent,
            "storage_path": str(root / "ray_results"),
            "cache_dir": str(root / "cache"),
        }
    )


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = open_now = 0
    for _, delta in events:
        open_now += delta
        best = max(best, open_now)
    return best


class Usage:
    """What this process and all its descendants (Ray nodes, workers) use while it is open:
    peak summed PSS (sampled every `pss_every` samples: reading smaps costs the driver CPU) and
    CPU seconds, from each process's last sample (a worker that exits between samples loses
    at most `every_s` of its CPU: a lower bound)."""

    def __init__(self, every_s: float = 2.0, pss_every: int = 5):
        self.every_s, self.pss_every, self.peak_bytes = every_s, pss_every, 0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Usage:
        self._baseline = self._cpu_now()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._cpu.update(self._cpu_now())

    @property
    def cpu_s(self) -> float:
        return sum(t - self._baseline.get(pid, 0.0) for pid, t in self._cpu.items())

    @staticmethod
    def _procs() -> list[psutil.Process]:
        me = psutil.Process()
        return [me, *me.children(recursive=True)]

    def _cpu_now(self) -> dict[int, float]:
        now = {}
        for proc in self._procs():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                now[proc.pid] = times.user + times.system
        return now

    def _sample(self) -> None:
        tick = 0
        while not self._stop.wait(self.every_s):
            self._cpu.update(self._cpu_now())
            tick += 1
            if tick % self.pss_every:
                continue
            total = 0
            for proc in self._procs():
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += proc.memory_full_info().pss  # a worker may exit mid-sample
            self.peak_bytes = max(self.peak_bytes, total)


def trial_floor(spec, n: int = 50) -> float:
    """Mean time of one trial's training alone: `fit` in this process, no Ray, no MLflow."""
    import torch

    from divsweep.datasets import build
    from divsweep.trainer.fit import fit

    torch.set_num_threads(1)
    trials = spec.trials()[:n]
    start = time.perf_counter()
    for trial in trials:
        data = build(trial.data, trial.eval, spec.cache_dir)
        with tempfile.TemporaryDirectory() as workdir:
            fit(trial, data, report=None, workdir=Path(workdir), accelerator="cpu")
    return (time.perf_counter() - start) / len(trials)


def fake_gpu_cluster():
    """Two local Ray nodes with 8 logical GPUs each; `ray.init` joins them."""
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": CPUS_PER_NODE, "num_gpus": GPUS_PER_NODE}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**node, "include_dashboard": False},
    )
    for _ in range(NODES - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    return cluster


def run_scale(root: Path, n_trials: int = N_TRIALS, max_concurrent: int = MAX_CONCURRENT) -> dict:
    """Run the sweep on a fresh fake-GPU cluster; return the measured figures."""
    import ray

    import divsweep
    from divsweep import tracking
    from divsweep.datasets import build_all

    spec = scale_spec(root, n_trials, max_concurrent)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    start = time.perf_counter()
    build_all(spec.data_configs(), cache_dir=spec.cache_dir, progress=False)
    build_s = time.perf_counter() - start
    # the store's tables once, untimed (seconds of schema migrations on first use)
    tracking.experiment_id(tracking.client(uri), spec.experiment)

    cluster = fake_gpu_cluster()
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        with Usage() as usage:
            start, began = time.perf_counter(), time.time()
            sweep = divsweep.run(spec, tracking_uri=uri, progress=False)
            wall = time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not sweep.interrupted

    mlf = tracking.client(uri)
    runs = tracking.trial_runs(mlf, sweep.experiment_id, sweep.parent_run_id)
    finished = [
        r for r in runs if r.data.tags.get(tracking.STATUS) == "finished" and r.info.end_time
    ]
    intervals = [(r.info.start_time / 1e3, r.info.end_time / 1e3) for r in finished]
    work = [end - begin for begin, end in intervals]
    slots = max_overlap(intervals)
    mean_work = sum(work) / len(work) if work else float("nan")
    # first run opened to last run closed: the sweep without its actors' start-up
    first = min(b for b, _ in intervals)
    span = max(e for _, e in intervals) - first
    return {
        "n_trials": n_trials,
        "max_concurrent": max_concurrent,
        "cluster_gpus": gpus,
        "build_s": build_s,
        "wall_s": wall,
        "child_runs": len(runs),
        "finished_runs": len(finished),
        "distinct_trial_keys": len({r.data.tags.get(tracking.KEY) for r in runs}),
        "max_concurrency": slots,
        "mean_concurrency": sum(work) / wall,
        "mean_work_s": mean_work,
        "overhead_s": wall * slots / n_trials - mean_work,
        "overhead_steady_s": span * slots / n_trials - mean_work,
        "steady_per_trial_s": span / n_trials,
        "first_run_after_s": first - began,
        "peak_pss_gb": usage.peak_bytes / 2**30,
        "cpu_per_trial_s": usage.cpu_s / n_trials,
        "floor_s": trial_floor(spec),
    }


def main(n_trials: int = N_TRIALS) -> None:
    from benchmarks.results_table import record

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    logging.getLogger("ray").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        f = run_scale(Path(tmp), n_trials)
    record(
        "scale",
        {
            "scale: trials completed (MLflow child runs finished)": (
                f["finished_runs"],
                f">= {n_trials}",
            ),
            "scale: mlflow child runs under the parent": (f["child_runs"], f">= {n_trials}"),
            "scale: mlflow child runs beyond the trial count": (
                f["child_runs"] - n_trials,
                "<= 0",
            ),
            "scale: distinct trial keys among child runs": (
                f["distinct_trial_keys"],
                f">= {n_trials}",
            ),
            "scale: fake GPUs declared (2 nodes)": (f["cluster_gpus"], ""),
            "scale: max concurrent trials allowed": (f["max_concurrent"], ""),
            "scale: achieved concurrency (max open runs)": (f["max_concurrency"], ""),
            "scale: achieved concurrency (mean open runs)": (f["mean_concurrency"], ""),
            "scale: sweep wall time (s)": (f["wall_s"], ""),
            "scale: wall per trial (s)": (f["wall_s"] / n_trials, ""),
            "scale: wall per trial, first run open to last closed (s)": (
                f["steady_per_trial_s"],
                "",
            ),
            "scale: first trial run opened after (s, actors starting)": (
                f["first_run_after_s"],
                "",
            ),
            "scale: trial work time, mean MLflow run (s)": (f["mean_work_s"], ""),
            "scale: scheduling overhead per trial (s)": (f["overhead_s"], ""),
            "scale: scheduling overhead per trial, first open to last closed (s)": (
                f["overhead_steady_s"],
                "",
            ),
            "scale: CPU per trial, driver + Ray + workers (s)": (f["cpu_per_trial_s"], ""),
            "scale: trial floor: fit alone in-process, no Ray/MLflow (s)": (f["floor_s"], ""),
            "scale: dataset build before the sweep (s)": (f["build_s"], ""),
            "scale: peak PSS, driver + Ray nodes + workers (GB)": (f["peak_pss_gb"], ""),
        },
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
