"""`divsweep train TRIAL.yaml`: a real tiny trial logged to a real (SQLite) MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from conftest import free_port
from test_trainer_fit import TASK
from typer.testing import CliRunner

from divsweep.trainer.cli import register

TRIAL = {
    "seed": 1,
    "data": {
        "task": TASK,
        "n_instructions": 4,
        "examples_per_instruction": 8,
    },
    "eval": {"seen_examples": 16, "unseen_instructions": 2, "unseen_examples_per_instruction": 8},
    "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "max_len": 32},
    "train": {"max_steps": 20, "eval_every": 10, "batch_size": 8, "num_threads": 1},
}


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is invoked by name as in divsweep
    register(app)
    return app


def test_train_logs_params_and_metrics_to_mlflow(
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("DIVSWEEP_CACHE", str(tmp_path / "cache"))
    trial = tmp_path / "trial.yaml"
    trial.write_text(yaml.safe_dump(TRIAL))
    args = ["train", str(trial), "--tracking-uri", tracking_uri, "--workdir", str(tmp_path / "w")]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert "unseen/exact_match" in result.output  # the final metrics table

    client = MlflowClient(tracking_uri=tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("divsweep-train").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["divsweep.status"] == "finished"
    kind = client.get_experiment_by_name("divsweep-train").tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"  # MLflow's UI opens it on its runs
    params = run.data.params
    assert params["model.d_model"] == "32" and params["train.max_steps"] == "20"
    assert params["data.total_examples"] == "32" and params["seed"] == "1"
    history = client.get_metric_history(run.info.run_id, "unseen/exact_match")
    assert sorted(m.step for m in history) == [10, 20]
    assert {"train/loss", "seen/token_acc", "output_tokens_per_s"} <= set(run.data.metrics)
    key = run.data.tags["divsweep.trial_key"]
    assert [p.name for p in (tmp_path / "w" / key / "checkpoints").iterdir()] == ["step-00000020"]


def test_bad_trial_config_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    trial = tmp_path / "trial.yaml"
    trial.write_text(yaml.safe_dump({**TRIAL, "model": {"n_layers": 0}}))
    divsweep = Path(sys.executable).parent / "divsweep"
    done = subprocess.run([divsweep, "train", str(trial)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "trial.model.n_layers" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_tracking_server_is_one_line_before_any_training(tmp_path: Path) -> None:
    trial = tmp_path / "trial.yaml"
    trial.write_text(yaml.safe_dump(TRIAL))
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    divsweep = Path(sys.executable).parent / "divsweep"
    cmd = [divsweep, "train", str(trial), "--tracking-uri", uri, "--workdir", str(tmp_path / "w")]
    env = {**os.environ, "DIVSWEEP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert f"cannot reach the MLflow tracking server at {uri}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "w").exists() and not (tmp_path / "cache").exists()  # nothing built
