"""Shared fixtures: one of each expensive real thing (Ray, MLflow server) per test session."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Lightning/Ray/MLflow chatter and telemetry off for every process the tests start.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# The worked example's package (examples/own_model) is importable here (pyproject's pytest
# pythonpath) and in every Ray worker the tests start, as a user's installed package would be.
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model"
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")])
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trial_runs(uri: str, experiment: str) -> list:
    """The MLflow child runs of every trial of sweep `experiment` ([] before it exists)."""
    from mlflow import MlflowClient  # only the tests that poll a sweep pay for the import

    mlf = MlflowClient(uri)
    exp = mlf.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return mlf.search_runs([exp.experiment_id], filter_string="tags.`divsweep.role` = 'trial'")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session, with fake GPUs declared for packing tests."""
    import ray

    if not ray.is_initialized():
        ray.init(
            # "local": a fresh Ray of our own, never another process's (a benchmark's, say)
            address="local",
            num_cpus=4,
            num_gpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store per test."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def wait_until_answers(proc: subprocess.Popen, url: str, log_path: Path, timeout_s: float) -> None:
    """Wait until a server this test started answers `url` (any 2xx/3xx); fails with its log
    if it exits first, and stops it if it has not answered within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited: {log_path.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()  # 4xx/5xx raise: not ready
            return
        except OSError:
            time.sleep(0.3)
    stop_process(proc)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s (log: {log_path})")


def start_mlflow_server(
    workdir: Path,
    port: int,
    extra_args: list[str] | None = None,
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
) -> subprocess.Popen:
    """Start a real `mlflow server` on 127.0.0.1 and wait until it answers /health. Its
    stores default to SQLite and a folder in workdir; `env` replaces its environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", backend_store_uri or f"sqlite:///{workdir / 'server.db'}",
        "--artifacts-destination", artifacts_destination or str(workdir / "artifacts"),
        "--workers", "1",
        *(extra_args or []),
    ]  # fmt: skip
    log_path = workdir / "server.log"
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    wait_until_answers(proc, f"http://127.0.0.1:{port}/health", log_path, timeout_s)
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1; yields its http:// URI."""
    port = free_port()
    proc = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"), port)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def start_s3_server(workdir: Path, port: int) -> subprocess.Popen:
    """moto's standalone S3 server on 127.0.0.1 (the S3 HTTP protocol, as Ray's own storage
    tests use it), in its own process group; waits until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    log_path = workdir / "s3.log"
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_answers(proc, f"http://127.0.0.1:{port}/", log_path, 60)
    return proc


S3_ENV = {
    # moto accepts any key; these only make the SDK sign its requests
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3 server for the session; yields its endpoint URL."""
    port = free_port()
    proc = start_s3_server(tmp_path_factory.mktemp("s3-server"), port)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch, request) -> str:
    """A fresh bucket on the local S3 server, with this process's environment pointed at it
    (endpoint and credentials, as a user's would be); yields `s3://BUCKET`."""
    from pyarrow import fs

    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    fs.S3FileSystem(
        endpoint_override=s3_server, region="us-east-1", allow_bucket_creation=True
    ).create_dir(bucket)
    return f"s3://{bucket}"
