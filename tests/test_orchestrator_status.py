"""`divsweep status --watch` against a real SQLite MLflow store, the sweep's runs written by
divsweep/tracking.py as the driver's tracker writes them."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console

from divsweep import tracking
from divsweep.orchestrator.status import watch


def test_watch_refreshes_until_the_sweep_ends(tracking_uri: str) -> None:
    mlf = MlflowClient(tracking_uri)
    exp_id = tracking.experiment_id(mlf, "watched")
    parent = tracking.start_parent(mlf, exp_id, "watched", "name: watched", 3)
    tags = {tracking.PARENT: parent, tracking.SWEEP: "watched"}
    now = int(time.time() * 1000)
    runs = {}
    for name, minutes in (("quick", 1), ("slow", 30), ("middling", 5)):
        start = now - minutes * 60_000
        runs[name] = tracking.create_trial_run(mlf, exp_id, name, name, {}, tags, start)
    metrics = {"step": 50.0, "unseen/exact_match": 0.25, "output_tokens_per_s": 1234.0}
    tracking.log_metrics(mlf, runs["quick"], metrics, 50, last=True)

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    ended = {}
    watcher = threading.Thread(
        target=lambda: ended.update(status=watch("watched", tracking_uri, 0.05, console))
    )
    watcher.start()
    deadline = time.monotonic() + 60
    while "slowest trials" not in out.getvalue():  # the first view is up
        assert time.monotonic() < deadline and watcher.is_alive(), out.getvalue()
        time.sleep(0.05)
    assert watcher.is_alive()  # the sweep is still running: so is the watch

    # a refresh of the report, as the sweep's driver writes one (orchestrator/refresh.py)
    mlf.set_tag(parent, tracking.REPORT, "/reports/watched/report.html")
    mlf.set_tag(parent, tracking.REPORT_STATE, "partial: 1 of 3 trials")
    tracking.log_metrics(mlf, runs["slow"], {**metrics, "unseen/exact_match": 0.5}, 50, last=True)
    tracking.set_status(mlf, runs["middling"], "failed")
    tracking.set_status(mlf, parent, "finished")
    watcher.join(timeout=60)
    assert not watcher.is_alive(), "the watch went on after the sweep ended"

    status = ended["status"]
    assert status.state == "finished" and status.best_unseen == 0.5
    assert status.counts == {"finished": 2, "failed": 1}
    assert [t.name for t in status.slowest] == ["slow", "middling", "quick"]
    assert status.slowest[2].tokens_per_s == 1234.0
    screen = out.getvalue()
    assert "slow" in screen and "1,234" in screen and "0.500" in screen
    assert status.report_state == "partial: 1 of 3 trials"
    assert "latest report (partial: 1 of 3 trials) at /reports/watched/report.html" in screen


def test_watch_command_ends_with_the_sweep_and_says_if_trials_failed(tracking_uri: str) -> None:
    mlf = MlflowClient(tracking_uri)
    exp_id = tracking.experiment_id(mlf, "ended")
    parent = tracking.start_parent(mlf, exp_id, "ended", "name: ended", 1)
    tags = {tracking.PARENT: parent, tracking.SWEEP: "ended"}
    run_id = tracking.create_trial_run(mlf, exp_id, "only", "only", {}, tags)
    tracking.set_status(mlf, run_id, "failed")
    tracking.set_status(mlf, parent, "finished")
    divsweep = [str(Path(sys.executable).with_name("divsweep")), "status"]
    uri = ["--tracking-uri", tracking_uri]
    done = subprocess.run([*divsweep, "ended", "--watch", *uri], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr  # a failed trial is loud
    assert "slowest trials" in done.stdout and "only" in done.stdout
    unnamed = subprocess.run([*divsweep, "--watch", *uri], capture_output=True, text=True)
    assert unnamed.returncode == 2 and "name the sweep" in unnamed.stderr
