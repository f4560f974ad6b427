"""Ctrl-C a sweep driver mid-way, `divsweep resume` it: every trial ends with exactly one
MLflow run and a complete, duplicate-free metric history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import trial_runs
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

from divsweep import tracking

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
# long enough that the poll below sees a trial part-way on a busy machine
STEPS = [50, 100, 150, 200]


@pytest.mark.slow
def test_resume_after_ctrl_c_finishes_without_duplicate_runs(tmp_path: Path) -> None:
    raw = tiny_spec(
        tmp_path,
        name="tiny-resume",
        axes={"data.n_instructions": [2, 4, 8, 16, 24, 32]},
        train={"max_steps": STEPS[-1], "eval_every": STEPS[0]},
        max_concurrent_trials=1,  # trials one after another: Ctrl-C leaves each kind of state
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own embedded Ray
    cmd = [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"]
    # a session of its own, so the SIGINT below reaches driver and Ray workers as Ctrl-C does
    driver = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        # MLflow's first-use table creation must not race the driver's: wait for its sweep
        started = any(Path(raw["storage_path"]).glob("*/sweep.json"))
        runs = trial_runs(uri, "tiny-resume") if started else []
        states = [r.data.tags.get("divsweep.status") for r in runs]
        mid = [r for r in runs if r.data.metrics.get("step", 0) >= STEPS[0] and states and
               r.data.tags.get("divsweep.status") == "running"]  # fmt: skip
        # one finished, one part-way (checkpointed), some not started: each kind of state
        if "finished" in states and mid and len(runs) <= 4:
            break
        time.sleep(0.5)
    assert driver.poll() is None, f"sweep ended before it was interrupted: {driver.stderr.read()}"
    os.killpg(driver.pid, signal.SIGINT)
    _, err = driver.communicate(timeout=180)
    assert driver.returncode == 130, f"not interrupted (finished first?): {err}"
    assert "divsweep resume tiny-resume" in err
    mlf = MlflowClient(uri)
    before = trial_runs(uri, "tiny-resume")
    assert sum(r.data.tags["divsweep.status"] == "finished" for r in before) < 6

    resumed = subprocess.run(
        [DIVSWEEP, "resume", "tiny-resume", "--storage-path", raw["storage_path"], "--no-report"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr

    after = trial_runs(uri, "tiny-resume")
    assert len(after) == 6
    assert len({r.data.tags["divsweep.trial_key"] for r in after}) == 6
    # the runs that existed before the interruption are the ones that finished after it
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in after}
    for run in after:
        assert run.data.tags["divsweep.status"] == "finished"
        assert run.info.status == "FINISHED"
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert sorted(m.step for m in history) == STEPS
    parent = mlf.search_runs(
        [after[0].info.experiment_id], filter_string="tags.`divsweep.role` = 'sweep'"
    )
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    # what each trial held, across the interruption: the attempt Ctrl-C cut counts (Tune saves
    # the cost callback's sums with its experiment state), then the resumed one
    for run in before:
        held = mlf.get_metric_history(run.info.run_id, tracking.HELD_S)
        cut = run.data.tags["divsweep.status"] != "finished"
        assert max(m.step for m in held) == (2 if cut else 1), run.data.tags
    total = parent[0].data.metrics[tracking.CPU_HOURS]
    assert total == pytest.approx(sum(r.data.metrics[tracking.CPU_HOURS] for r in after))
