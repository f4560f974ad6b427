"""The sweep's tracker (journal + in-order MLflow writer) against a real SQLite store, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_port
from mlflow import MlflowClient

from divsweep import tracking
from divsweep.errors import UserError
from divsweep.orchestrator.run import Sweep, _drain
from divsweep.orchestrator.tracker import (
    JOURNAL_FILE,
    Journal,
    Tracker,
    artifact_record,
    log_record,
    open_record,
    status_record,
)

PLACED = {"divsweep.node": "node-a", "divsweep.node_id": "n1"}


def sweep_parent(uri: str) -> tuple[MlflowClient, str, str]:
    mlf = MlflowClient(uri)
    exp_id = tracking.experiment_id(mlf, "tracked")
    return mlf, exp_id, tracking.start_parent(mlf, exp_id, "tracked", "name: tracked", 1)


def evaluation(step: int, loss: float) -> dict[str, float]:
    return {"step": float(step), "train/loss": loss}


def test_records_reach_mlflow_in_order(tmp_path: Path, tracking_uri: str) -> None:
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    tracker = Tracker(tracking_uri, exp_id, parent, tmp_path / JOURNAL_FILE, new_sweep=True)
    opened = open_record("k1", {"seed": "0"}, {tracking.SWEEP: "tracked"})
    opened["time_ms"] -= 60_000  # a trial that started a minute before its records were sent
    tracker.submit(opened)
    tracker.submit(log_record("k1", evaluation(4, 2.0), last=False, tags=PLACED))
    last = log_record("k1", evaluation(8, 1.0), last=True, tags={})
    tracker.submit(last)
    assert tracker.drain() == (0, None)
    tracker.close()

    (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    assert run.data.params == {"seed": "0"}
    assert run.data.tags[tracking.KEY] == "k1" and run.data.tags["divsweep.node_id"] == "n1"
    assert run.data.tags[tracking.STATUS] == "finished" and run.info.status == "FINISHED"
    # the trial's own times, not when the tracker sent them
    assert (run.info.start_time, run.info.end_time) == (opened["time_ms"], last["timestamp_ms"])
    history = mlf.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(4, 2.0), (8, 1.0)]
    assert Journal(tmp_path / JOURNAL_FILE).unapplied() == []


def test_artifacts_are_copied_from_the_trials_folder_and_a_missing_one_is_named(
    tmp_path: Path, tracking_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    tracker = Tracker(tracking_uri, exp_id, parent, tmp_path / JOURNAL_FILE, new_sweep=True)
    checkpoint = tmp_path / "checkpoint_000000"
    checkpoint.mkdir()
    (checkpoint / "predictions.parquet").write_bytes(b"PAR1 rows")
    tracker.submit(open_record("k1", {}, {tracking.SWEEP: "tracked"}))
    tracker.submit(artifact_record("k1", str(checkpoint), "predictions.parquet", "predictions"))
    tracker.submit(artifact_record("k1", str(checkpoint), "gone.parquet", "predictions"))
    tracker.submit(log_record("k1", evaluation(1, 1.0), last=True, tags={}))
    assert tracker.drain() == (0, None)
    tracker.close()

    (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    logged = mlf.download_artifacts(run.info.run_id, "predictions", str(tmp_path / "got"))
    assert sorted(p.name for p in Path(logged).iterdir()) == ["predictions.parquet"]
    assert (Path(logged) / "predictions.parquet").read_bytes() == b"PAR1 rows"
    assert run.info.status == "FINISHED"
    assert f"{checkpoint / 'gone.parquet'} not found" in caplog.text


def test_next_tracker_sends_what_a_killed_one_left(tmp_path: Path, tracking_uri: str) -> None:
    """A driver killed after journaling, before sending: its journal holds records past the
    applied mark. The resumed sweep's tracker sends them first, once each, and skips the
    evaluations a resumed trial repeats."""
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    path = tmp_path / JOURNAL_FILE
    first = Tracker(tracking_uri, exp_id, parent, path, new_sweep=True)
    first.submit(open_record("k1", {}, {}))
    first.submit(log_record("k1", evaluation(4, 2.0), last=False, tags={}))
    assert first.drain() == (0, None)
    first.close()
    # journaled and never sent, and a line torn by the kill mid-append
    journal = Journal(path)
    journal.append(log_record("k1", evaluation(8, 1.5), last=False, tags={}))
    journal.close()
    with open(path, "a") as f:
        f.write('{"op": "log", "key": "k1", "st')

    resumed = Tracker(tracking_uri, exp_id, parent, path, new_sweep=False)
    # the resumed trial restarts from its step-4 checkpoint and reports 8 again, then 12
    resumed.submit(open_record("k1", {}, {}))
    resumed.submit(log_record("k1", evaluation(8, 1.5), last=False, tags={}))
    resumed.submit(log_record("k1", evaluation(12, 1.0), last=True, tags={}))
    assert resumed.drain() == (0, None)
    resumed.close()

    (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    history = mlf.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(4, 2.0), (8, 1.5), (12, 1.0)]
    assert run.info.status == "FINISHED"
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line) for line in lines)  # torn line dropped


def test_driver_marks_follow_the_trials_own(tmp_path: Path, tracking_uri: str) -> None:
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    tracker = Tracker(tracking_uri, exp_id, parent, tmp_path / JOURNAL_FILE, new_sweep=True)
    for key in ("done", "cut"):
        tracker.submit(open_record(key, {}, {}))
    tracker.submit(log_record("done", evaluation(8, 1.0), last=True, tags={}))
    tracker.submit(log_record("cut", evaluation(4, 1.0), last=False, tags={}))
    for key in ("done", "cut"):  # as the driver marks what ASHA ended
        tracker.submit(status_record(key, "stopped", unless=("finished", "stopped")))
    tracker.submit(status_record("never-opened", "failed"))  # failed before its run opened
    assert tracker.drain() == (0, None)
    tracker.close()
    runs = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    status = {
        r.data.tags[tracking.KEY]: (r.data.tags[tracking.STATUS], r.info.status) for r in runs
    }
    assert status == {"done": ("finished", "FINISHED"), "cut": ("stopped", "KILLED")}


def test_a_refused_record_stops_the_sweep_and_is_kept(tmp_path: Path, tracking_uri: str) -> None:
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    tracker = Tracker(tracking_uri, exp_id, parent, tmp_path / JOURNAL_FILE, new_sweep=True)
    tracker.submit(open_record("k1", {}, {}))
    assert tracker.drain() == (0, None)
    (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    mlf.delete_run(run.info.run_id)  # someone deletes the run in the UI mid-sweep
    tracker.submit(log_record("k1", evaluation(4, 2.0), last=False, tags={}))
    left, refusal = tracker.drain()
    tracker.close()
    assert left == 1 and "active" in refusal  # MLflow: the run must be active
    assert [r["step"] for r in Journal(tmp_path / JOURNAL_FILE).unapplied()] == [4]


def test_drain_names_the_journal_when_mlflow_stays_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIVSWEEP_MLFLOW_RETRY_S", "1")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sweep = Sweep("away", "away", "1", "parent", uri, str(tmp_path), "name: away")
    tracker = Tracker(uri, "1", "parent", tmp_path / JOURNAL_FILE, new_sweep=True)
    tracker.submit(open_record("k1", {}, {}))
    with pytest.raises(
        UserError, match=r"did not answer for 1 s; 1 records .*/tracking-journal.jsonl"
    ):
        _drain(tracker, sweep)
    tracker.close()
    assert len(Journal(tmp_path / JOURNAL_FILE).unapplied()) == 1


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    """The three real cache files of configs/trial-tiny.yaml."""
    from divsweep.datasets import build
    from divsweep.trainer.config import load_trial_config

    cfg = load_trial_config(Path(__file__).resolve().parents[1] / "configs" / "trial-tiny.yaml")
    return build(cfg.data, cfg.eval, cache_dir=tmp_path_factory.mktemp("cache"))


def test_datasets_become_the_runs_inputs_once(tmp_path: Path, tracking_uri: str, tiny_data) -> None:
    """Each attempt reports its datasets; the run holds each once, as an MLflow dataset input
    with its context, even after a replayed journal and a resumed sweep's tracker."""
    from dataclasses import asdict

    from divsweep.orchestrator.tracker import inputs_record
    from divsweep.workers.inputs import describe

    described = [describe(path, kind) for kind, path in asdict(tiny_data).items()]
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    path = tmp_path / JOURNAL_FILE
    first = Tracker(tracking_uri, exp_id, parent, path, new_sweep=True)
    first.submit(open_record("k1", {}, {}))
    first.submit(inputs_record("k1", described))
    first.submit(inputs_record("k1", described))  # a retried attempt reports them again
    assert first.drain() == (0, None)
    first.close()
    Journal(path).set_applied(1)  # a driver killed before its mark moved: both are re-sent
    resumed = Tracker(tracking_uri, exp_id, parent, path, new_sweep=False)
    resumed.submit(inputs_record("k1", described))
    assert resumed.drain() == (0, None)
    resumed.close()

    (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    inputs = {
        i.tags[0].value: i.dataset for i in mlf.get_run(run.info.run_id).inputs.dataset_inputs
    }
    assert sorted(inputs) == ["eval_seen", "eval_unseen", "eval_unseen_val", "training"]
    train = inputs["training"]
    assert train.name == "rewrite train: 64 rules x 20"
    assert inputs["eval_unseen"].name == "rewrite eval unseen test: 64 held-out rules x 4"
    assert inputs["eval_unseen_val"].name == "rewrite eval unseen validation: 32 held-out rules x 4"
    assert train.digest == tiny_data.train.stem[:36]  # the cache key the file is named by
    assert json.loads(train.source) == {"uri": tiny_data.train.resolve().as_uri()}
    assert train.source_type == "local"
    columns = {c["name"]: c for c in json.loads(train.schema)["mlflow_colspec"]}
    assert columns["prompt_ids"]["type"] == "array" and columns["input"]["type"] == "string"
    profile = json.loads(train.profile)
    assert profile["num_rows"] == 64 * 20 and profile["cache_key"] == tiny_data.train.stem
    assert profile["config"]["data"]["n_instructions"] == 64


def test_system_samples_are_the_runs_system_metrics(tmp_path: Path, tracking_uri: str) -> None:
    """At their own times, stepped by seconds since the run started, more than one batch of
    them at once, and once each when a journal is replayed."""
    mlf, exp_id, parent = sweep_parent(tracking_uri)
    path = tmp_path / JOURNAL_FILE
    tracker = Tracker(tracking_uri, exp_id, parent, path, new_sweep=True)
    opened = open_record("k1", {}, {})
    tracker.submit(opened)
    start = opened["time_ms"]
    cpu, rss = tracking.PROCESS_CPU, tracking.PROCESS_RSS
    # a long stretch between evaluations: 600 samples x 2 figures, past one log_batch
    samples = [[start + 500 * i, {cpu: float(i), rss: 100.0 + i}] for i in range(600)]
    tracker.submit(log_record("k1", evaluation(4, 2.0), last=False, tags={}, system=samples))
    later = [[start + 400_000, {cpu: 42.0, rss: 900.0}]]
    tracker.submit(log_record("k1", evaluation(8, 1.0), last=True, tags={}, system=later))
    assert tracker.drain() == (0, None)
    tracker.close()
    Journal(path).set_applied(1)  # both evaluations are sent again by the next tracker
    resumed = Tracker(tracking_uri, exp_id, parent, path, new_sweep=False)
    assert resumed.drain() == (0, None)
    resumed.close()

    (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.PARENT}` = '{parent}'")
    history = mlf.get_metric_history(run.info.run_id, cpu)
    points = sorted((m.timestamp, m.step, m.value) for m in history)
    assert len(points) == 601
    assert points[3] == (start + 1500, 1, 3.0) and points[-1] == (start + 400_000, 400, 42.0)
    assert len(mlf.get_metric_history(run.info.run_id, rss)) == 601
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in mlf.get_metric_history(run.info.run_id, "train/loss")) == [4, 8]
