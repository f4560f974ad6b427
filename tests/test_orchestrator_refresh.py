"""A running sweep's report, refreshed as its trials end: the refresher on a sweep logged to
MLflow, and `divsweep run` in its own process with its trials paused one after another
(trainer/pause.py), so that the test sees each refresh at a known point; no sleep races the
machine."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from test_drills_driver_kill import kill_group, pause_env, releasing, start, wait_for
from test_orchestrator_spec import tiny_spec
from test_report_sweep import log_sweep, trial

from divsweep import tracking
from divsweep.orchestrator.refresh import FIRST_RENDER_CPU_S, Refresher
from divsweep.orchestrator.report.builtin.pages import SECTION_IDS
from divsweep.orchestrator.tracker import Tracker
from divsweep.trainer.pause import paused, release

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
NAME, N_TRIALS = "tiny-refresh", 3


def parent_run(uri: str):
    """The sweep's parent run (None before the driver made it)."""
    mlf = MlflowClient(uri)
    exp = mlf.get_experiment_by_name(NAME)
    return tracking.find_parent(mlf, exp.experiment_id) if exp else None


def parent_tags(uri: str) -> dict[str, str]:
    parent = parent_run(uri)
    return {} if parent is None else parent.data.tags


def check_report(folder: Path, done: int | None) -> str:
    """A whole report in `folder`: every section, and the banner naming `done` of N_TRIALS
    trials (None: the final report, no banner); its trials table holds what had ended."""
    html = (folder / "report.html").read_text()
    assert all(f'<section id="{sid}">' in html for sid in SECTION_IDS)
    md = (folder / "report.md").read_text()
    trials = pd.read_csv(folder / "trials.csv")
    ended = trials["status"].isin(["finished", "stopped", "failed"]).sum()
    if done is None:
        assert "PARTIAL" not in md and ended == N_TRIALS
    else:
        assert f"PARTIAL: sweep still running — {done} of {N_TRIALS} trials done." in md
        assert ended == done
    return md


@pytest.mark.slow
def test_report_refreshes_while_the_sweep_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = tiny_spec(
        tmp_path,
        name=NAME,
        axes={"data.n_instructions": [4, 8, 16]},
        max_concurrent_trials=1,
        cost={"cpu_hour": 0.04},
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    pauses = tmp_path / "pauses"
    # every trial pauses half-way; refresh after every trial that ends (the default cadence
    # would wait 30 s and more between them)
    env = pause_env(pauses, 4) | {"DIVSWEEP_REPORT_EVERY_S": "0", "DIVSWEEP_REPORT_CPU_SHARE": "1"}
    driver = start([DIVSWEEP, "run", str(spec), "--tracking-uri", uri], tmp_path, env)
    folder = tmp_path / "reports" / NAME
    try:
        released: set[str] = set()
        for done in (1, 2):
            # trial `done` pauses; released, it ends; the next pauses while the test reads
            (key,) = wait_for(lambda: paused(pauses) - released, f"trial {done} to pause", driver)
            release(pauses, key)
            released.add(key)
            wait_for(lambda: paused(pauses) - released, f"trial {done + 1} to pause", driver)
            state = f"partial: {done} of {N_TRIALS} trials"
            # the refresh is whole once the parent run says so (its last write)
            wait_for(
                lambda: parent_tags(uri).get(tracking.REPORT_STATE) == state,  # noqa: B023
                f"the report of {done} trials",
                driver,
            )
            check_report(folder, done)
            assert parent_tags(uri)[tracking.REPORT] == str((folder / "report.html").resolve())
            status = subprocess.run(
                [DIVSWEEP, "status", NAME, "--tracking-uri", uri],
                capture_output=True, text=True, check=True, cwd=tmp_path,
            ).stdout  # fmt: skip
            assert f"latest report ({state}) at {folder.resolve() / 'report.html'}" in status
        with releasing(pauses):
            _, err = driver.communicate(timeout=300)
    finally:
        kill_group(driver.pid)
    assert driver.returncode == 0, err

    final = check_report(folder, None)
    parent = parent_run(uri)
    assert parent.data.tags[tracking.REPORT_STATE] == f"final: {N_TRIALS} trials"
    assert parent.data.metrics[tracking.REFRESHES] >= 2
    assert parent.data.metrics[tracking.REFRESH_CPU_S] > 0
    # the final report is what `divsweep report` writes afterwards
    after = tmp_path / "after"
    subprocess.run(
        [DIVSWEEP, "report", NAME, "--out", str(after), "--tracking-uri", uri],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert (after / "report.md").read_text() == final
    for table in ("trials.csv", "summary.csv"):
        assert (after / table).read_text() == (folder / table).read_text()


def two_trial_refresher(name: str, tmp_path: Path, tracking_uri: str):
    """(parent run id, tracker, refresher) of a logged two-trial sweep; the refresher may use a
    whole core: its first render may start once FIRST_RENDER_CPU_S (10 s) have passed."""
    parent = log_sweep(tracking_uri, name, [trial(10, 0.2), trial(100, 0.7)])
    exp_id = MlflowClient(tracking_uri).get_experiment_by_name(name).experiment_id
    tracker = Tracker(tracking_uri, exp_id, parent, tmp_path / "journal.jsonl", new_sweep=False)
    return parent, tracker, Refresher(name, tracking_uri, tmp_path / "out", tracker, 0, share=1.0)


def test_asks_coalesce_into_one_render(tmp_path: Path, tracking_uri: str) -> None:
    parent, tracker, refresher = two_trial_refresher("coalesce", tmp_path, tracking_uri)
    mlf = MlflowClient(tracking_uri)
    try:  # three trials ending before the first render may start ask three times
        for _ in range(3):
            refresher.request()
        deadline = time.monotonic() + FIRST_RENDER_CPU_S + 300
        while refresher.renders == 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # polls the refresher's own counter: an event, not a guess
    finally:
        refresher.close()
        tracker.close()
    assert refresher.renders == 1 and refresher.cpu_s > 0
    assert mlf.get_run(parent).data.tags[tracking.REPORT_STATE] == "final: 2 trials"
    assert "Cost: not measured" in (tmp_path / "out" / "report.md").read_text()


def test_a_render_the_sweeps_end_stops_is_counted_apart(tmp_path: Path, tracking_uri: str) -> None:
    """Closing the refresher stops a render in flight: no refresh, its CPU counted, the render
    counted as cut on the parent run."""
    parent, tracker, refresher = two_trial_refresher("cut", tmp_path, tracking_uri)
    mlf = MlflowClient(tracking_uri)
    try:
        refresher.request()
        deadline = time.monotonic() + FIRST_RENDER_CPU_S + 300
        while not refresher.rendering:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        refresher.close()
        tracker.close()
    refresher.log(mlf, parent)
    figures = mlf.get_run(parent).data.metrics
    assert (refresher.renders, refresher.cut) == (0, 1)
    assert figures[tracking.REFRESHES] == 0 and figures[tracking.REFRESHES_CUT] == 1
    assert not (tmp_path / "out" / "report.md").exists()
