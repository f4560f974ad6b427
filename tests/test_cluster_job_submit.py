"""`ray job submit` to a local token-auth cluster (`ray start --head` with the dashboard's Jobs
server, which the project's `ray[default]` dependency brings): the job's driver runs
`divsweep run … --address auto` on the head, the sweep finishes, MLflow holds its runs, and
`divsweep status` from another process sees them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster_utils import RAY, local_cluster
from conftest import trial_runs
from test_orchestrator_spec import tiny_spec

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))


@pytest.mark.slow
def test_job_submit_runs_a_sweep_on_the_cluster(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    raw = tiny_spec(tmp_path, name="job-sweep")
    (job_dir / "spec.yaml").write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # head only: two nodes of this machine share one Ray temp dir, and the second node's
    # runtime-env agent would delete the job's unpacked working dir, the head driver's cwd
    with local_cluster(num_cpus=2, with_worker=False) as cluster:
        env = {**cluster.env(), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        cmd = [
            RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(job_dir),
            "--", DIVSWEEP, "run", "spec.yaml", "--address", "auto", "--tracking-uri", uri,
            "--no-report",
        ]  # fmt: skip
        job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "sweep job-sweep finished: 2 finished, 0 failed, 0 stopped" in job.stdout
        status = subprocess.run(
            [DIVSWEEP, "status", "job-sweep", "--tracking-uri", uri],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "job-sweep" in status.stdout
    runs = trial_runs(uri, "job-sweep")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
