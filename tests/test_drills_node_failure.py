"""Drill: a sweep on a real two-node Ray cluster (tests/cluster_utils.py: token auth, both
nodes on 127.0.0.1, storage and dataset cache on this machine's disk, which both share). Its
trials land on both nodes; the second node's raylet is SIGKILLed while a trial is paused
mid-way there (trainer/pause.py); that trial is retried on the surviving node and the sweep
completes, every trial in its one MLflow run with a complete metric history."""

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
from test_drills_driver_kill import kill_group, releasing, start, wait_for
from test_orchestrator_spec import tiny_spec

from divsweep.trainer.pause import PAUSE_AT_STEP, PAUSE_DIR, paused

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
GRID = [2, 4, 8, 16]
STEPS = [20, 40, 60, 80]
PAUSE_AT = STEPS[1]  # every trial stops here until released: mid-way, checkpoint on record


def raylet_node_id(node) -> str:
    """The Ray node id of a `ray start` process, from its raylet's command line."""
    for child in psutil.Process(node.pid).children(recursive=True):
        if child.name() == "raylet":
            for arg in child.cmdline():
                if arg.startswith("--node_id="):
                    return arg.removeprefix("--node_id=")
    raise RuntimeError("no raylet under this node")


def paused_on_two_nodes(uri: str, experiment: str, pauses: Path) -> dict[str, str]:
    """Trial key -> Ray node id of the paused trials, once MLflow shows paused trials on two
    nodes at the pause step; {} until then."""
    keys = paused(pauses)
    if len(keys) < 2:
        return {}
    runs = {r.data.tags["divsweep.trial_key"]: r for r in trial_runs(uri, experiment)}
    where = {
        key: runs[key].data.tags.get("divsweep.node_id")
        for key in keys
        if key in runs and runs[key].data.metrics.get("step", 0) >= PAUSE_AT
    }
    return where if len(set(where.values()) - {None}) == 2 else {}


def pause_vars(pauses: Path) -> dict[str, str]:
    """Both nodes' trials pause at PAUSE_AT (a node's trials take its environment)."""
    return {PAUSE_DIR: str(pauses), PAUSE_AT_STEP: str(PAUSE_AT)}


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
    pauses = tmp_path / "pauses"
    started = time.monotonic()
    # one trial per node at a time: the first two pause mid-way, one on each node
    with local_cluster(num_cpus=1, env_extra=pause_vars(pauses)) as cluster:
        lost = raylet_node_id(cluster.worker)
        cmd = [DIVSWEEP, "run", str(spec), "--address", cluster.address, "--tracking-uri", uri]
        driver = start([*cmd, "--no-report"], tmp_path, cluster.env())
        try:
            where = wait_for(
                lambda: paused_on_two_nodes(uri, "drill-node", pauses),
                "a trial paused on each node",
                driver,
            )
            (victim,) = [key for key, node in where.items() if node == lost]
            cluster.kill_worker_raylet()
            with releasing(pauses):
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
    (moved,) = [r for r in runs if r.data.tags["divsweep.trial_key"] == victim]
    assert moved.data.tags["divsweep.node_id"] != lost  # finished on the surviving node
    print(f"\ndrill node failure: {elapsed:.1f} s with cluster start-up; trials paused on both "
          f"nodes, the second node killed under one; {len(runs)}/{len(GRID)} finished, the "
          "victim retried on the head in its own run")  # fmt: skip
