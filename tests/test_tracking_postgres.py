"""Production-shaped tracking: `mlflow server` on 127.0.0.1 with a PostgreSQL backend store
and its artifacts proxied to an S3 bucket (the local moto server); a sweep and its report
run against it through the server alone, with no S3 credential on the driver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest
import yaml
from conftest import S3_ENV, free_port, start_mlflow_server, stop_process
from mlflow import MlflowClient
from test_drills_driver_kill import run_to_end
from test_orchestrator_spec import tiny_spec
from test_orchestrator_sweep import check_tracked
from test_storage_sweep import bucket_files

from divsweep.orchestrator.report.builtin.write import OUTPUT_FILES
from divsweep.orchestrator.report.core import ARTIFACT_DIR
from divsweep.trainer import predictions

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
# Debian's packages put each major version's server binaries here (not on PATH)
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


def as_postgres(*cmd: str) -> list[str]:
    """`cmd` run as the postgres system user: PostgreSQL refuses to run as root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL of our own for the session: a fresh data directory and socket folder in a
    temporary directory, on a free 127.0.0.1 port; yields the URL of an `mlflow` database
    owned by an `mlflow` role. Stopped (fast shutdown) and deleted at the end."""
    if not PG_BINS:
        pytest.skip(
            "PostgreSQL server binaries absent (/usr/lib/postgresql/*/bin): "
            "apt-get install postgresql (scripts/test-setup.sh does, as root)"
        )
    bin_dir = PG_BINS[-1].parent
    # not under pytest's tmp folder: that is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="divsweep-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()

    def pg(tool: str, *args: str) -> None:
        subprocess.run(
            as_postgres(str(bin_dir / tool), *args), check=True, capture_output=True, timeout=120
        )

    # trust: only this test's clients reach it, on 127.0.0.1 and a socket in root
    pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
    try:
        host = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        pg("createuser", *host, "mlflow")
        pg("createdb", *host, "-O", "mlflow", "mlflow")
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        stop_postgres(bin_dir, data)
        shutil.rmtree(root, ignore_errors=True)


def stop_postgres(bin_dir: Path, data: Path) -> None:
    """Fast shutdown of the server on `data`; SIGKILL its postmaster (by the pid it wrote)
    if it has not stopped."""
    stop = as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    if subprocess.run(stop, capture_output=True, timeout=120).returncode == 0:
        return
    pid_file = data / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), 9)


@pytest.fixture
def production_server(
    postgres_url: str, s3_server: str, s3_bucket: str, tmp_path: Path
) -> Iterator[str]:
    """`mlflow server` over PostgreSQL, artifacts proxied to s3_bucket/mlflow; only the server
    holds the S3 endpoint and credentials (MLflow's S3 store reads MLFLOW_S3_ENDPOINT_URL)."""
    port = free_port()
    env = {**os.environ, **S3_ENV, "MLFLOW_S3_ENDPOINT_URL": s3_server}
    proc = start_mlflow_server(
        tmp_path / "mlflow-server",
        port,
        # the driver named: this SQLAlchemy's default for postgresql:// is psycopg 3
        backend_store_uri=postgres_url.replace("postgresql://", "postgresql+psycopg2://"),
        artifacts_destination=f"{s3_bucket}/mlflow",
        env=env,
        timeout_s=300,  # the first start creates MLflow's schema in PostgreSQL
    )
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


@pytest.mark.slow
def test_sweep_and_report_against_postgres_and_s3(
    production_server: str, postgres_url: str, s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tmp_path, name="pg-s3")))
    # the driver talks to MLflow only: no S3 endpoint or credential of its own
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    cmd = [DIVSWEEP, "run", str(spec), "--tracking-uri", production_server]
    code, err = run_to_end(cmd, tmp_path, env)
    assert code == 0, err
    assert (tmp_path / "reports" / "pg-s3" / "report.html").is_file()

    mlf = MlflowClient(production_server)
    exp = mlf.get_experiment_by_name("pg-s3")
    (parent,) = mlf.search_runs([exp.experiment_id], "tags.`divsweep.role` = 'sweep'")
    sweep = SimpleNamespace(
        name="pg-s3",
        tracking_uri=production_server,
        experiment_id=exp.experiment_id,
        parent_run_id=parent.info.run_id,
    )
    runs = check_tracked(sweep, n_trials=2)  # parent + one FINISHED child per trial

    # what MLflow holds is in PostgreSQL: the server kept its runs there
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE experiment_id = %s", (exp.experiment_id,))
        assert sorted(s for (s,) in cur.fetchall()) == ["FINISHED"] * 3
    conn.close()

    # ...and the artifacts in the bucket, where the proxy put them
    bucket = s3_bucket.removeprefix("s3://")
    files = set(bucket_files(s3_server, f"{bucket}/mlflow"))

    def stored(run_id: str, artifact: str) -> str:
        return f"{bucket}/mlflow/{exp.experiment_id}/{run_id}/artifacts/{artifact}"

    assert {stored(parent.info.run_id, f"{ARTIFACT_DIR}/{f}") for f in OUTPUT_FILES} <= files
    figures = [
        f for f in files if f.startswith(stored(parent.info.run_id, f"{ARTIFACT_DIR}/figures/"))
    ]
    assert figures and all(f.endswith(".png") for f in figures)
    for run in runs:
        artifact = f"{predictions.ARTIFACT_DIR}/{predictions.FILE}"
        assert stored(run.info.run_id, artifact) in files
