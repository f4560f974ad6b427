"""Drill: a two-node Ray cluster without a shared filesystem. The second node's raylet runs in
its own mount namespace with an empty tmpfs over the storage and dataset-cache folders
(tests/cluster_utils.py), so it sees none of the head's local files there, as a node on
another machine would not. Object storage is a real S3-protocol server on 127.0.0.1 (moto);
the nodes get only credentials from their environment (the endpoint travels with the
filesystem Tune pickles).

- A driver without the cluster's token is told the token is missing and how to supply it.
- `storage_path` a local folder: the preflight fails with exit 2 naming the node, before any
  MLflow run exists.
- `storage_path: s3://…`: trials land on both nodes; the second node's raylet is SIGKILLed
  while a trial is paused mid-way there (trainer/pause.py), the trial is retried on the head
  from its S3 checkpoint, the sweep completes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from cluster_utils import LocalCluster, local_cluster
from conftest import S3_ENV, trial_runs
from mlflow import MlflowClient
from test_drills_driver_kill import kill_group, releasing, start, wait_for
from test_drills_node_failure import STEPS, pause_vars, paused_on_two_nodes, raylet_node_id
from test_orchestrator_spec import tiny_spec

pytestmark = pytest.mark.slow

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
GRID = [2, 4, 8, 16]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("noshare")


@pytest.fixture(scope="module")
def cluster(base: Path) -> LocalCluster:
    private = (base / "ray_results", base / "cache")
    # trials pause mid-way (only the S3 sweep has any): the folder is outside the private ones
    env = {**S3_ENV, **pause_vars(base / "pauses")}
    with local_cluster(num_cpus=1, worker_private=private, env_extra=env) as c:
        yield c


def spec_file(base: Path, name: str, **overrides) -> Path:
    raw = tiny_spec(base, name=name, **overrides)
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def sweep_runs(uri: str, experiment: str) -> list:
    """Every run of the experiment, parent included ([] when it was never created)."""
    mlf = MlflowClient(uri)
    exp = mlf.get_experiment_by_name(experiment)
    return [] if exp is None else mlf.search_runs([exp.experiment_id])


def run_driver(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    driver = start(cmd, cwd, env)
    try:
        _, err = driver.communicate(timeout=600)
    finally:
        kill_group(driver.pid)
    return driver.returncode, err, time.monotonic() - started


def test_driver_without_token_is_told_how_to_supply_it(cluster: LocalCluster, base: Path) -> None:
    spec = spec_file(base, "no-token")
    uri = f"sqlite:///{base / 'no-token.db'}"
    cmd = [DIVSWEEP, "run", str(spec), "--address", cluster.address, "--tracking-uri", uri]
    code, err, elapsed = run_driver(cmd, base, cluster.env(with_token=False))
    assert code == 2, err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "cannot join the Ray cluster" in line and "RAY_AUTH_MODE is not 'token'" in line
    assert "RAY_AUTH_TOKEN" in line and "ray get-auth-token" in line
    assert sweep_runs(uri, "no-token") == []  # no parent run left RUNNING
    print(f"\nrefused without a token in {elapsed:.1f} s: {line}")


def test_local_storage_fails_the_preflight_naming_the_node(
    cluster: LocalCluster, base: Path
) -> None:
    spec = spec_file(base, "local-store")  # storage_path: base/ray_results, hidden on node 2
    uri = f"sqlite:///{base / 'local-store.db'}"
    cmd = [DIVSWEEP, "run", str(spec), "--address", cluster.address, "--tracking-uri", uri]
    code, err, elapsed = run_driver(cmd, base, cluster.env())
    assert code == 2, err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    worker = raylet_node_id(cluster.worker)
    assert f"storage {base / 'ray_results'} is not usable from Ray node {worker}" in line, line
    assert sweep_runs(uri, "local-store") == []  # failed before the parent run was opened
    print(f"\npreflight refused local storage in {elapsed:.1f} s (driver start to exit): {line}")


def test_s3_sweep_on_both_nodes_survives_losing_one(
    cluster: LocalCluster, base: Path, s3_server: str, s3_bucket: str
) -> None:
    spec = spec_file(
        base,
        "s3-nodes",
        storage_path=f"{s3_bucket}/sweeps",
        axes={"data.n_instructions": GRID},
        train={"max_steps": STEPS[-1], "eval_every": STEPS[0]},
        retries=2,
    )
    uri = f"sqlite:///{base / 's3-nodes.db'}"
    env = {**cluster.env(), **S3_ENV, "AWS_ENDPOINT_URL": s3_server}
    lost = raylet_node_id(cluster.worker)
    cmd = [DIVSWEEP, "run", str(spec), "--address", cluster.address, "--tracking-uri", uri]
    started = time.monotonic()
    driver = start([*cmd, "--no-report"], base, env)
    try:
        # one trial per node at a time: the first two pause mid-way, one on each node
        where = wait_for(
            lambda: paused_on_two_nodes(uri, "s3-nodes", base / "pauses"),
            "a trial paused on each node",
            driver,
        )
        (key,) = [k for k, node in where.items() if node == lost]
        cluster.kill_worker_raylet()
        with releasing(base / "pauses"):
            _, err = driver.communicate(timeout=500)
    finally:
        kill_group(driver.pid)
    assert driver.returncode == 0, err
    elapsed = time.monotonic() - started

    runs = trial_runs(uri, "s3-nodes")
    assert len({r.data.tags["divsweep.trial_key"] for r in runs}) == len(runs) == len(GRID)
    mlf = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert sorted(m.step for m in history) == STEPS  # none lost, none twice
    (moved,) = [r for r in runs if r.data.tags["divsweep.trial_key"] == key]
    assert moved.data.tags["divsweep.node_id"] != lost  # finished on the surviving node
    # the driver journals every evaluation any attempt reported: a retry from scratch would
    # report the early steps again; one from the S3 checkpoint goes straight on
    (journal,) = (base / ".divsweep" / "journals").glob("s3-nodes-*/tracking-journal.jsonl")
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    steps = [r["step"] for r in records if r["op"] == "log" and r["key"] == key]
    assert steps == STEPS, steps
    print(f"\nS3 two-node drill: {elapsed:.1f} s; trials on both nodes, victim retried on head")
