"""MLflow with basic-auth: anonymous and wrong-password writes are refused, env-var creds work."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, start_mlflow_server, stop_process

# Server start alone is ~20 s on the 2-core dev box; the user/run round trips add ~30 s more.
pytestmark = pytest.mark.slow

ADMIN = "admin"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real `mlflow server --app-name basic-auth`; yields (uri, admin password)."""
    workdir = tmp_path_factory.mktemp("mlflow-auth")
    config = workdir / "basic_auth.ini"
    # NO_PERMISSIONS: a team server where every user sees only what they were granted.
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{workdir / 'auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    password = secrets.token_urlsafe(16)
    mp = pytest.MonkeyPatch()
    # The admin password reaches the server by environment only, never by a file in the repo.
    mp.setenv("MLFLOW_AUTH_CONFIG_PATH", str(config))
    mp.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    # CSRF signing key for the auth app's Flask session; must match across server replicas.
    mp.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    port = free_port()
    try:
        proc = start_mlflow_server(workdir, port, ["--app-name", "basic-auth"])
    finally:
        mp.undo()
    yield f"http://127.0.0.1:{port}", password
    stop_process(proc)


def post(uri: str, path: str, body: dict, user: str | None = None, password: str = "") -> int:
    request = urllib.request.Request(f"{uri}{path}", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if user is not None:
        creds = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {creds}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


CREATE = "/api/2.0/mlflow/experiments/create"


def test_anonymous_write_is_refused(auth_server: tuple[str, str]) -> None:
    uri, _ = auth_server
    assert post(uri, CREATE, {"name": "anon"}) in (401, 403)


def test_wrong_password_is_refused(auth_server: tuple[str, str]) -> None:
    uri, _ = auth_server
    assert post(uri, CREATE, {"name": "wrong"}, ADMIN, "not-the-password") in (401, 403)


def test_env_credentials_log_a_run(
    auth_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The client side divsweep relies on: creds only in MLFLOW_TRACKING_USERNAME/PASSWORD."""
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    uri, admin_password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
    user_password = secrets.token_urlsafe(16)
    AuthServiceClient(uri).create_user("researcher", user_password)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "researcher")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user_password)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("auth-smoke", artifact_location=None)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "unseen/exact_match", 0.5, step=1)
    client.set_terminated(run.info.run_id)
    stored = client.get_run(run.info.run_id)
    assert stored.data.metrics["unseen/exact_match"] == 0.5
    # Credentials are transport-level only: nothing about them lands in the run.
    flat = json.dumps([stored.data.params, stored.data.tags])
    assert user_password not in flat and admin_password not in flat

    # Under NO_PERMISSIONS, another authenticated user cannot write into this experiment.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
    AuthServiceClient(uri).create_user("outsider", "outsider-pass-123")
    status = post(
        uri,
        "/api/2.0/mlflow/runs/create",
        {"experiment_id": experiment_id},
        "outsider",
        "outsider-pass-123",
    )
    assert status in (401, 403)


def test_sweep_logs_no_credentials(auth_server: tuple[str, str], tmp_path: Path) -> None:
    """A real `divsweep run` against the auth server: creds reach it (and its Ray workers) by
    environment only, and nothing it logs — params, tags, the spec artifact — contains them."""
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient
    from test_orchestrator_spec import DIVSWEEP, tiny_spec, write_spec

    uri, admin_password = auth_server
    password = secrets.token_urlsafe(16)
    admin_env = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": admin_password}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in admin_env.items():
            mp.setenv(key, value)
        AuthServiceClient(uri).create_user("divsweep-bot", password)

    raw = tiny_spec(tmp_path, name="creds", axes={"data.n_instructions": [4]})
    spec = write_spec(tmp_path, raw)
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": "divsweep-bot"}
    env["MLFLOW_TRACKING_PASSWORD"] = password
    result = subprocess.run(
        [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert password not in result.stdout + result.stderr

    with pytest.MonkeyPatch.context() as mp:
        for key, value in admin_env.items():
            mp.setenv(key, value)
        mlf = MlflowClient(tracking_uri=uri)
        experiment = mlf.get_experiment_by_name("creds")
        runs = mlf.search_runs([experiment.experiment_id])
        assert len(runs) == 2  # the sweep's parent run and one trial
        parent = next(r for r in runs if r.data.tags.get("divsweep.role") == "sweep")
        logged = [json.dumps([r.data.params, r.data.tags]) for r in runs]
        logged.append(Path(mlf.download_artifacts(parent.info.run_id, "spec.yaml")).read_text())
    for text in logged:
        assert password not in text and admin_password not in text
        assert "MLFLOW_TRACKING_PASSWORD" not in text
