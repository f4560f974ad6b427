"""Sweeps with `storage_path: s3://…` on a real S3-protocol server (moto, 127.0.0.1): the
checkpoints, Tune's experiment state, sweep.json and the journal mirror are in the bucket;
after the driver is SIGKILLed, `divsweep resume --storage-path s3://…` from another working
directory, with nothing local left, finishes every trial exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import S3_ENV, trial_runs
from mlflow import MlflowClient
from pyarrow import fs
from test_drills_driver_kill import (
    kill_group,
    kill_one_done_one_paused,
    pause_env,
    run_to_end,
    start,
)
from test_orchestrator_spec import tiny_spec

from divsweep.trainer import predictions

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
STEPS = [50, 100, 150, 200]


def s3_env(endpoint: str) -> dict[str, str]:
    """A driver's environment pointed at the local S3 server, credentials included (as a
    user's shell or an instance role would provide them)."""
    return {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": endpoint}


def bucket_files(endpoint: str, prefix: str) -> list[str]:
    s3 = fs.S3FileSystem(endpoint_override=endpoint, region="us-east-1")
    infos = s3.get_file_info(fs.FileSelector(prefix, recursive=True))
    return [i.path for i in infos if i.type == fs.FileType.File]


@pytest.mark.slow
def test_s3_sweep_keeps_its_state_in_the_bucket(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    root = f"{s3_bucket}/sweeps"
    raw = tiny_spec(tmp_path, name="s3-sweep", storage_path=root)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"]
    env = s3_env(s3_server)
    code, err = run_to_end(cmd, tmp_path, env)
    assert code == 0, err

    files = bucket_files(s3_server, root.removeprefix("s3://"))
    (state,) = [f for f in files if f.endswith("/sweep.json")]
    folder = state.removesuffix("/sweep.json")
    assert any(f.startswith(f"{folder}/trials/experiment_state") for f in files)
    assert any("/checkpoint_" in f for f in files), files
    assert f"{folder}/journal/tracking-journal.jsonl" in files
    assert not (tmp_path / "ray_results").exists()  # nothing of the sweep's folder is local
    runs = trial_runs(uri, "s3-sweep")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    # no credential lands in what MLflow keeps
    client = MlflowClient(uri)
    for run in runs:
        assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in str(run.data.params | run.data.tags)
        # each trial's predictions came from its last checkpoint in the bucket
        logged = client.list_artifacts(run.info.run_id, predictions.ARTIFACT_DIR)
        assert [Path(a.path).name for a in logged] == [predictions.FILE]
    # from another folder, the storage alone finds the sweep's MLflow store
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = [DIVSWEEP, "status", "s3-sweep", "--storage-path", root]
    code, err = run_to_end(status, elsewhere, env, timeout_s=120)
    assert code == 0, err


def test_a_bad_storage_uri_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tmp_path, name="bad-uri")))
    cmd = [DIVSWEEP, "run", str(spec), "--storage-path", "hdfs://nn/x", "--no-report"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --storage-path: unsupported storage scheme 'hdfs': "
        "use s3://, gs://, file:// or a path"
    )
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


@pytest.mark.slow
def test_resume_from_another_folder_with_nothing_local_finishes_every_trial_once(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    root = f"{s3_bucket}/sweeps"
    grid = [2, 4, 8, 16]
    raw = tiny_spec(
        tmp_path,
        name="s3-resume",
        storage_path=root,
        axes={"data.n_instructions": grid},
        train={"max_steps": STEPS[-1], "eval_every": STEPS[0]},
        max_concurrent_trials=1,
    )
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    spec = first / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = s3_env(s3_server)
    paused_env = {**pause_env(tmp_path / "pauses", STEPS[0]), **env}
    cmd = [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"]
    driver = start(cmd, first, paused_env)
    try:
        kill_one_done_one_paused(driver, tmp_path / "pauses", uri, "s3-resume", STEPS[0])
    finally:
        kill_group(driver.pid)
    before = trial_runs(uri, "s3-resume")
    assert sum(r.data.tags["divsweep.status"] == "finished" for r in before) < len(grid)
    shutil.rmtree(first)  # the first machine is gone: spec, local journal, everything

    cmd = [DIVSWEEP, "resume", "s3-resume", "--storage-path", root, "--tracking-uri", uri]
    code, err = run_to_end([*cmd, "--no-report"], second, env)
    assert code == 0, err

    after = trial_runs(uri, "s3-resume")
    keys = [r.data.tags["divsweep.trial_key"] for r in after]
    assert len(after) == len(grid) and len(set(keys)) == len(grid)  # none missing, none twice
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in after}
    mlf = MlflowClient(uri)
    for run in after:
        assert run.data.tags["divsweep.status"] == "finished" and run.info.status == "FINISHED"
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert sorted(m.step for m in history) == STEPS  # none lost, none twice
