"""The report refreshed while a 100-trial sweep runs: what it costs the driver.

`python -m benchmarks bench_refresh`. bench_orchestration's 100 trials, a few times longer
(the sweep lasts a minute or two), on one local Ray (2 CPUs), run three ways: without a
report; with the report refreshed at the default cadence (orchestrator/refresh.py: at most one
every 30 s, within 2% of one core, so a sweep this short gets none: the first waits until 2%
of the sweep's time covers one render); and uncapped (no interval, renders may take a whole
core), the cost the cadence avoids. Per way: the sweep's time (its parent run's start to end,
before the final report), the refreshes, their CPU seconds (the render processes' own), and
their share of the driver's CPU (the driver process's own plus theirs) and of one core over
the sweep.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import ray

import divsweep
from benchmarks.bench_orchestration import CPUS, N_TRIALS, bench_spec, create_store
from benchmarks.results_table import record
from divsweep import tracking
from divsweep.datasets import build_all

STEPS = 40  # per trial: ~1-2 s on the 2-core test machine, a sweep of minutes
CADENCES = {  # environment of each way (orchestrator/refresh.py reads it)
    "none": None,
    "default": {},
    "uncapped": {"DIVSWEEP_REPORT_EVERY_S": "0", "DIVSWEEP_REPORT_CPU_SHARE": "1"},
}


def run_one(spec, uri: str, report_dir: Path | None, cadence: dict) -> dict[str, float]:
    for name, value in cadence.items():
        os.environ[name] = value
    try:
        sweep = divsweep.run(spec, tracking_uri=uri, progress=False, report_dir=report_dir)
    finally:
        for name in cadence:
            del os.environ[name]
    assert not sweep.interrupted and sweep.outcome["finished"] == N_TRIALS
    parent = tracking.client(uri).get_run(sweep.parent_run_id)
    figures = parent.data.metrics
    refresh = figures.get(tracking.REFRESH_CPU_S, 0.0)
    driver = figures.get(tracking.DRIVER_CPU_S, 0.0)
    wall = (parent.info.end_time - parent.info.start_time) / 1000
    return {
        "sweep_s": wall,
        "refreshes": figures.get(tracking.REFRESHES, 0.0),
        "cut": figures.get(tracking.REFRESHES_CUT, 0.0),
        "refresh_cpu_s": refresh,
        "share_of_driver_cpu": refresh / (driver + refresh) if driver else 0.0,
        "share_of_one_core": refresh / wall,
    }


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as tmp:
        root = Path(tmp)
        base = bench_spec(root)
        train = {**base.train, "max_steps": STEPS, "eval_every": STEPS}
        spec = base.model_copy(update={"name": "bench-refresh", "train": train})
        build_all(spec.data_configs(), cache_dir=spec.cache_dir, progress=False)
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
        try:
            uri = f"sqlite:///{root / 'mlflow.db'}"
            create_store(uri)
            ways = {
                way: run_one(spec, uri, None if env is None else root / way, env or {})
                for way, env in CADENCES.items()
            }
        finally:
            ray.shutdown()
    for way, figures in ways.items():
        print(way, " ".join(f"{k}={v:.4g}" for k, v in figures.items()))
    default, eager, bare = ways["default"], ways["uncapped"], ways["none"]
    record(
        "refresh",
        {
            # the cadence bounds the renders' share of one core of the driver's machine; the
            # driver process itself uses little CPU (Tune's loop, the tracker), so the renders'
            # share of the two together is large once one happens (0.40 in a 1,116 s sweep)
            "refresh.default_share_of_driver_cpu": (default["share_of_driver_cpu"], ""),
            "refresh.default_share_of_one_core": (default["share_of_one_core"], "<= 0.02"),
            "refresh.default_refreshes": (default["refreshes"], ""),
            "refresh.uncapped_share_of_driver_cpu": (eager["share_of_driver_cpu"], ""),
            "refresh.uncapped_refreshes": (eager["refreshes"], ""),
            # renders the sweep's end stopped: CPU spent, no report written
            "refresh.uncapped_renders_cut": (eager["cut"], ""),
            "refresh.uncapped_cpu_s_per_render": (
                eager["refresh_cpu_s"] / max(eager["refreshes"] + eager["cut"], 1),
                "",
            ),
            "refresh.default_sweep_over_none": (default["sweep_s"] / bare["sweep_s"], ""),
            "refresh.uncapped_sweep_over_none": (eager["sweep_s"] / bare["sweep_s"], ""),
        },
    )


if __name__ == "__main__":
    main()
