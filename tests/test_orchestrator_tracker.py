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
