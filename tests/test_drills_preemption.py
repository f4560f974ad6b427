"""Drills: checkpoint on notice (trainer/preemption.py). A trial paused between evaluations
(trainer/pause.py's boundary pause) gets a preemption notice, a drain of its node or a SIGTERM to
its process; it checkpoints at that step, reports it, and stops, and its retry resumes from that
step: the journal holds no step twice, the retry's first step is the paused step + 1, MLflow
logs no evaluation twice, the preemption is on the trial's run, and the sweep exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from cluster_utils import RAY, local_cluster
from conftest import trial_runs
from mlflow import MlflowClient
from test_drills_driver_kill import kill_group, releasing, start, wait_for
from test_drills_node_failure import raylet_node_id
from test_orchestrator_spec import tiny_spec

from divsweep import tracking
from divsweep.orchestrator.tracker import JOURNAL_FILE
from divsweep.trainer.pause import (
    PAUSE_AT_BOUNDARY,
    PAUSE_DIR,
    paused,
    paused_pid,
    release,
    starts,
)

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
EVALS = [10, 20, 30]
PAUSE_AT = 15  # between the first two evaluations: only a checkpoint on notice saves it
DEADLINE_S = 5  # the drain's notice; the node is taken once it has passed


def write_spec(tmp_path: Path, name: str, grid: list[int], retries: int) -> Path:
    raw = tiny_spec(
        tmp_path,
        name=name,
        axes={"data.n_instructions": grid},
        train={"max_steps": EVALS[-1], "eval_every": EVALS[0]},
        retries=retries,
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    return spec


def pause_vars(pauses: Path) -> dict[str, str]:
    # a fast drain poll: the drill waits on it, a sweep would not notice the difference
    return {
        PAUSE_DIR: str(pauses),
        PAUSE_AT_BOUNDARY: str(PAUSE_AT),
        "DIVSWEEP_DRAIN_POLL_S": "0.2",
    }


def runs_by_key(uri: str, experiment: str) -> dict:
    return {r.data.tags[tracking.KEY]: r for r in trial_runs(uri, experiment)}


def journal_steps(tmp_path: Path) -> dict[str, list[int]]:
    """Each trial's evaluations and checkpoints as the driver journaled them, in order."""
    (journal,) = tmp_path.glob(f"ray_results/**/{JOURNAL_FILE}")
    steps: dict[str, list[int]] = {}
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        if record["op"] == "log":
            steps.setdefault(record["key"], []).append(record["step"])
    return steps


def assert_resumed_at_notice(
    tmp_path: Path, uri: str, experiment: str, pauses: Path, key: str, source: str
) -> None:
    """Trial `key` stopped at PAUSE_AT on a `source` notice and resumed from there."""
    steps = journal_steps(tmp_path)
    assert steps[key] == sorted(set(steps[key])), steps[key]  # no step twice
    assert PAUSE_AT in steps[key]
    assert starts(pauses, key) == [1, PAUSE_AT + 1]  # the retry's first step
    run = runs_by_key(uri, experiment)[key]
    assert run.data.tags[tracking.PREEMPTED] == source
    mlf = MlflowClient(uri)
    notices = mlf.get_metric_history(run.info.run_id, tracking.PREEMPTIONS)
    assert [(m.step, m.value) for m in notices] == [(PAUSE_AT, 1.0)]
    for run in runs_by_key(uri, experiment).values():
        assert run.data.tags["divsweep.status"] == "finished" and run.info.status == "FINISHED"
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert sorted(m.step for m in history) == EVALS  # none lost, none twice


def drain(cluster, node_id: str) -> float:
    """`ray drain-node` as the autoscaler asks for a preempted instance; the deadline (Unix s)."""
    deadline = time.time() + DEADLINE_S
    subprocess.run(
        [
            RAY, "drain-node", "--address", cluster.address, "--node-id", node_id,
            "--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", "spot reclaim",
            "--deadline-remaining-seconds", str(DEADLINE_S),
        ],
        env=cluster.env(), check=True, capture_output=True,
    )  # fmt: skip
    return deadline


def paused_on_both_nodes(uri: str, experiment: str, pauses: Path) -> dict[str, str]:
    """Trial key -> Ray node id, once a trial is paused on each node ({} until then)."""
    keys = paused(pauses)
    runs = runs_by_key(uri, experiment)
    where = {k: runs[k].data.tags.get("divsweep.node_id") for k in keys if k in runs}
    return where if len(set(where.values()) - {None}) == 2 else {}


@pytest.mark.slow
def test_drained_node_trial_checkpoints_at_its_step_and_resumes_elsewhere(tmp_path: Path):
    spec = write_spec(tmp_path, "drill-drain", [2, 4], retries=0)  # a drain is no failure
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pauses = tmp_path / "pauses"
    started = time.monotonic()
    # one CPU per node: the two trials run one on each, both pause at PAUSE_AT
    with local_cluster(num_cpus=1, env_extra=pause_vars(pauses)) as cluster:
        drained = raylet_node_id(cluster.worker)
        cmd = [DIVSWEEP, "run", str(spec), "--address", cluster.address, "--tracking-uri", uri]
        driver = start([*cmd, "--no-report"], tmp_path, cluster.env())
        try:
            where = wait_for(
                lambda: paused_on_both_nodes(uri, "drill-drain", pauses),
                "a trial paused on each node",
                driver,
            )
            (victim,) = [key for key, node in where.items() if node == drained]
            deadline = drain(cluster, drained)
            wait_for(
                lambda: runs_by_key(uri, "drill-drain")[victim].data.tags.get(tracking.PREEMPTED),
                "the drained trial's checkpoint on record",
                driver,
            )
            # the cloud takes the instance at the deadline, not before
            wait_for(lambda: time.time() > deadline, "the drain deadline", driver)
            cluster.reclaim_worker_node()
            with releasing(pauses):
                _, err = driver.communicate(timeout=400)
        finally:
            kill_group(driver.pid)
        assert driver.returncode == 0, err
    assert_resumed_at_notice(tmp_path, uri, "drill-drain", pauses, victim, "drain")
    moved = runs_by_key(uri, "drill-drain")[victim]
    assert moved.data.tags["divsweep.node_id"] != drained  # finished on the other node
    print(f"\ndrill drain: {time.monotonic() - started:.1f} s with cluster start-up; the drained "
          f"trial checkpointed at step {PAUSE_AT}, resumed at {PAUSE_AT + 1} on the head, "
          "with retries: 0")  # fmt: skip


@pytest.mark.slow
def test_sigterm_trial_checkpoints_at_its_step_and_resumes(tmp_path: Path):
    spec = write_spec(tmp_path, "drill-sigterm", [4], retries=1)  # SIGTERM counts: one retry
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pauses = tmp_path / "pauses"
    started = time.monotonic()
    cmd = [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"]
    driver = start(cmd, tmp_path, {**os.environ, **pause_vars(pauses)})
    try:
        (key,) = wait_for(lambda: paused(pauses), "the trial to pause", driver)
        pid = paused_pid(pauses, key)
        # a process of this drill's sweep (Ray's workers lead groups of their own), no other
        assert pid in {p.pid for p in psutil.Process(driver.pid).children(recursive=True)}
        os.kill(pid, signal.SIGTERM)
        _, err = driver.communicate(timeout=400)
    finally:
        release(pauses, key)
        kill_group(driver.pid)
    assert driver.returncode == 0, err
    assert_resumed_at_notice(tmp_path, uri, "drill-sigterm", pauses, key, "sigterm")
    print(f"\ndrill SIGTERM: {time.monotonic() - started:.1f} s; the trial checkpointed at step "
          f"{PAUSE_AT} and its retry resumed at {PAUSE_AT + 1}")  # fmt: skip
