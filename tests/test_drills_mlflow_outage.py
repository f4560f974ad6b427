"""Drill: the MLflow tracking server goes away mid-sweep and comes back on the same port with
the same backend store; no run and no metric is lost. Trials keep training through the outage:
their records wait in the sweep tracker's journal (orchestrator/tracker.py), sent in order once
the server answers again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port, start_mlflow_server, stop_process
from mlflow import MlflowClient
from test_drills_driver_kill import kill_group, pause_env, releasing, wait_for
from test_orchestrator_spec import tiny_spec

from divsweep import tracking
from divsweep.orchestrator.tracker import JOURNAL_FILE, Tracker, log_record, open_record
from divsweep.trainer.pause import paused, release

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))


@pytest.mark.slow
def test_tracker_keeps_records_through_a_server_restart(tmp_path: Path) -> None:
    port, workdir = free_port(), tmp_path / "server"
    servers = [start_mlflow_server(workdir, port)]
    uri = f"http://127.0.0.1:{port}"
    mlf = tracking.client(uri)
    exp_id = tracking.experiment_id(mlf, "journal")
    parent = tracking.start_parent(mlf, exp_id, "journal", "name: journal", 1)
    tracker = Tracker(uri, exp_id, parent, tmp_path / JOURNAL_FILE, new_sweep=True)
    loss = {1: 4.0, 2: 3.0, 3: 2.0, 4: 1.0}
    try:
        tracker.submit(open_record("k1", {}, {}))
        tracker.submit(log_record("k1", {"step": 1, "loss": loss[1]}, last=False, tags={}))
        assert tracker.drain() == (0, None)
        stop_process(servers[0])
        # server away: each record is journaled at once and the caller goes on
        started = time.monotonic()
        for step in (2, 3, 4):
            tracker.submit(log_record("k1", {"step": step, "loss": loss[step]}, step == 4, {}))
        assert time.monotonic() - started < 1
        assert [r["step"] for r in tracker.journal.unapplied()] == [2, 3, 4]
        servers.append(start_mlflow_server(workdir, port))
        assert tracker.drain() == (0, None)
        tracker.close()
        (run,) = mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.KEY}` = 'k1'")
        history = mlf.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == list(loss.items())
        assert run.info.status == "FINISHED"
    finally:
        for proc in servers:
            stop_process(proc)


@pytest.mark.slow
def test_sweep_survives_a_tracking_server_outage(tmp_path: Path) -> None:
    port, workdir = free_port(), tmp_path / "server"
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(workdir, port)
    # Every trial pauses half-way (trainer/pause.py): the server goes down while the first is
    # paused, the first then trains to its end through the outage, and the second pausing
    # proves the driver went on meanwhile; no sleep races the machine.
    steps = list(range(50, 901, 50))
    pause_step = 450
    raw = tiny_spec(
        tmp_path,
        name="drill-outage",
        axes={"data.n_instructions": [4, 8, 16]},
        train={"max_steps": steps[-1], "eval_every": steps[0]},
        max_concurrent_trials=1,
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    pauses = tmp_path / "pauses"
    env = {k: v for k, v in pause_env(pauses, pause_step).items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    driver = subprocess.Popen(
        [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"],
        cwd=tmp_path, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        mlf = MlflowClient(uri)
        (first,) = wait_for(lambda: paused(pauses), "a first trial to pause", driver)
        stop_process(server)
        down = time.time()
        release(pauses, first)
        (second,) = wait_for(lambda: paused(pauses) - {first}, "a second trial to pause", driver)
        assert driver.poll() is None, "the driver ended during the outage"
        server = start_mlflow_server(workdir, port)
        up = time.time()
        with releasing(pauses) as released:  # each later trial pauses in turn: let it go
            _, err = driver.communicate(timeout=300)
        assert {first, second} <= released and len(released) == 3
    finally:
        kill_group(driver.pid)
    elapsed = time.monotonic() - started
    try:
        assert driver.returncode == 0, err
        exp = mlf.get_experiment_by_name("drill-outage")
        runs = mlf.search_runs([exp.experiment_id], filter_string="tags.`divsweep.role` = 'trial'")
        assert len(runs) == 3 and len({r.data.tags["divsweep.trial_key"] for r in runs}) == 3
        during = 0
        for run in runs:
            assert run.data.tags["divsweep.status"] == "finished", run.data.tags
            assert run.info.status == "FINISHED"
            for name in ("unseen/exact_match", "seen/exact_match", "train/loss"):
                history = mlf.get_metric_history(run.info.run_id, name)
                assert sorted(m.step for m in history) == steps, name  # nothing lost or twice
            history = mlf.get_metric_history(run.info.run_id, "train/loss")
            during += sum(down * 1000 <= m.timestamp <= up * 1000 for m in history)
        assert during > 0  # evaluations did happen while the server was away
        (parent,) = mlf.search_runs(
            [exp.experiment_id], filter_string="tags.`divsweep.role` = 'sweep'"
        )
        assert parent.info.status == "FINISHED"
    finally:
        stop_process(server)
    print(f"\ndrill MLflow outage: {up - down:.0f} s outage, sweep {elapsed:.1f} s, {during} "
          f"evaluations made during it, 3/3 runs x {len(steps)} steps, 0 lost")  # fmt: skip
