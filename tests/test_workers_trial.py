"""The Ray-side trial: retries and re-runs of a trial continue its one MLflow run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

import divsweep
from divsweep.orchestrator.spec import parse_spec
from divsweep.orchestrator.tracker import JOURNAL_FILE, Tracker
from divsweep.orchestrator.tuner import Driver, TrackingCallback, attach, make_tuner


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (MLflow creates a store's tables once, in seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def trial_runs(uri: str, sweep) -> list:
    return MlflowClient(uri).search_runs(
        [sweep.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}'"
    )


def test_failing_trial_is_retried_in_its_own_run(ray_session, tmp_path: Path, store: str):
    # max_len 8 is shorter than any prompt + output: the trainer refuses, on every attempt
    raw = tiny_spec(
        tmp_path,
        name="tiny-fail",
        axes={"data.n_instructions": [4]},
        model={"max_len": 8},
        retries=1,
    )
    sweep = divsweep.run(parse_spec(raw), tracking_uri=store, progress=False)
    assert not sweep.interrupted  # an errored trial is an outcome, not an interruption
    (run,) = trial_runs(store, sweep)  # two attempts, one run
    assert run.data.tags["divsweep.status"] == "failed" and run.info.status == "FAILED"


def test_rerun_trial_continues_its_run_without_relogging(ray_session, tmp_path: Path, store: str):
    spec = parse_spec(tiny_spec(tmp_path, name="tiny-rerun", axes={"data.n_instructions": [4]}))
    sweep = divsweep.run(spec, tracking_uri=store, progress=False)
    (first,) = trial_runs(store, sweep)
    mlf = MlflowClient(store)
    history = mlf.get_metric_history(first.info.run_id, "train/loss")

    # the same trial under the same parent, as a resumed driver's Tune runs it again: it finds
    # its run by key, and the evaluations MLflow holds are not logged twice
    again = Tracker(
        sweep.tracking_uri,
        sweep.experiment_id,
        sweep.parent_run_id,
        tmp_path / "again" / JOURNAL_FILE,
        new_sweep=False,
    )
    key = str(tmp_path / "again")
    callback = TrackingCallback(key, sweep.name, early_stopping=False)
    context = {"cache_dir": str(spec.cache_dir)}
    with attach(key, Driver(again)):
        make_tuner(spec, context, tmp_path / "again", "again", [callback]).fit()
    assert again.drain() == (0, None)
    again.close()

    (again,) = trial_runs(store, sweep)
    assert again.info.run_id == first.info.run_id
    assert again.data.tags["divsweep.status"] == "finished"
    rerun_history = mlf.get_metric_history(first.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in rerun_history] == [(m.step, m.value) for m in history]
