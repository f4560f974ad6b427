"""Drill: a sweep on a real two-node Ray cluster (tests/cluster_utils.py: token auth, both
nodes on 127.0.0.1, storage and dataset cache on this machine's disk, which both share). Its
trials land on both nodes; the second node's raylet is SIGKILLed while a trial trains there;
that trial is retried on the surviving node and the sweep completes, every trial in its one
MLflow run with a complete metric history."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from cluster_utils import local_cluster
from conftest import trial_runs
from mlflow import MlflowClient
from test_drills_driver_kill import kill_group, start
from test_orchestrator_spec import tiny_spec

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
GRID = [2, 4, 8, 16]
STEPS = list(range(50, 501, 50))  # seconds per trial even on a quiet machine: killed mid-way


def raylet_node_id(node) -> str:
    """The Ray node id of a `ray start` process, from its raylet's command line."""
    for child in psutil.Process(node.pid).children(recursive=True):
        if child.name() == "raylet":
            for arg in child.cmdline():
                if arg.startswith("--node_id="):
                    return arg.removeprefix("--node_id=")
    raise RuntimeError("no raylet under this node")


@pytest.mark.slow
def test_sweep_on_two_nodes_survives_losing_one(tmp_path: Path) -> None:
    raw = tiny_spec(
        tmp_path,
        name="drill-node",
        axes={"data.n_instructions": GRID},
        train={"max_steps": STEPS[-1], "eval_every": STEPS[0]},
        retries=2,
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    with local_cluster(num_cpus=1) as cluster:  # one trial per node at a time
        lost = raylet_node_id(cluster.worker)
        cmd = [DIVSWEEP, "run", str(spec), "--address", cluster.address, "--tracking-uri", uri]
        driver = start([*cmd, "--no-report"], tmp_path, cluster.env())
        try:
            seen: dict[str, str] = {}  # trial key -> node id it was last seen running on
            victim = None
            deadline = time.monotonic() + 300
            # until a trial is part-way on the second node and some trial has shown up on each
            # node (the head's may open its run a moment after the second node's)
            while time.monotonic() < deadline and driver.poll() is None:
                begun = any(tmp_path.glob("ray_results/*/sweep.json"))
                for run in trial_runs(uri, "drill-node") if begun else []:
                    tags = run.data.tags
                    if "divsweep.node_id" not in tags:  # tagged with its first evaluation
                        continue
                    seen[tags["divsweep.trial_key"]] = tags["divsweep.node_id"]
                    step = run.data.metrics.get("step", 0)
                    on_lost = tags["divsweep.node_id"] == lost
                    running = tags["divsweep.status"] == "running"
                    # chosen only once both nodes have shown trials, so it is still early in
                    # its training when the kill lands
                    both = len(set(seen.values())) == 2
                    if both and on_lost and running and 0 < step <= STEPS[2]:
                        victim = run
                        break
                if victim is not None:
                    break
                time.sleep(0.5)
            assert victim is not None, f"no trial mid-way on the second node: {seen}"
            assert len(set(seen.values())) == 2  # trials landed on both nodes
            cluster.kill_worker_raylet()
            _, err = driver.communicate(timeout=400)
        finally:
            kill_group(driver.pid)
        assert driver.returncode == 0, err
    elapsed = time.monotonic() - started

    runs = trial_runs(uri, "drill-node")
    assert len(runs) == len(GRID)
    assert len({r.data.tags["divsweep.trial_key"] for r in runs}) == len(GRID)
    mlf = MlflowClient(uri)
    for run in runs:
        assert run.data.tags["divsweep.status"] == "finished" and run.info.status == "FINISHED"
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert sorted(m.step for m in history) == STEPS  # none lost, none twice
    (moved,) = [r for r in runs if r.info.run_id == victim.info.run_id]
    assert moved.data.tags["divsweep.node_id"] != lost  # finished on the surviving node
    on_lost = sum(node == lost for node in seen.values())
    print(f"\ndrill node failure: {elapsed:.1f} s with cluster start-up; {len(seen)} trials seen "
          f"before the kill, {on_lost} on the lost node; {len(runs)}/{len(GRID)} finished, "
          "victim retried on the head in its own run")  # fmt: skip
