"""Drill: the sweep driver is SIGKILLed mid-sweep (no handler runs, no state is saved on the
way out), its embedded Ray dies with it; `divsweep resume` then finishes every trial: as many
finished trials as the grid holds, no MLflow child run duplicated or missing, no metric step
logged twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import trial_runs
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
# the kill leaves some done, one half-done, some not begun; five trials so a quiet machine
# cannot finish the sweep between two polls
GRID = [2, 4, 8, 16, 24]
STEPS = [50, 100, 150, 200]  # long enough to catch a trial mid-way between polls


def kill_group(pgid: int) -> int:
    """SIGKILL what is left of a process group this test created (the driver's embedded Ray:
    GCS, raylet, workers), and wait for it; never `ray stop`, which would take every Ray of
    this user down. Returns how many processes were left."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    psutil.wait_procs(members, timeout=30)
    return len(members)


def start(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in (env or os.environ).items() if k != "RAY_ADDRESS"}  # no stray Ray
    # its own process group: the driver and its Ray can be killed without touching others
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_resume_after_driver_sigkill_finishes_every_trial_once(tmp_path: Path) -> None:
    raw = tiny_spec(
        tmp_path,
        name="drill-kill",
        axes={"data.n_instructions": GRID},
        train={"max_steps": STEPS[-1], "eval_every": STEPS[0]},
        max_concurrent_trials=1,  # one after another
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    driver = start([DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"], tmp_path)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            # MLflow's first-use table creation must not race the driver's: wait for its sweep
            runs = (
                trial_runs(uri, "drill-kill")
                if any(tmp_path.glob("ray_results/*/sweep.json"))
                else []
            )
            done = [r for r in runs if r.data.tags.get("divsweep.status") == "finished"]
            mid = [r for r in runs if r.data.tags.get("divsweep.status") == "running"
                   and r.data.metrics.get("step", 0) >= STEPS[0]]  # fmt: skip
            if done and mid:
                break
            time.sleep(0.5)
        assert driver.poll() is None, f"sweep ended before the kill: {driver.stderr.read()}"
        driver.kill()  # SIGKILL: a crash, the OOM killer, a lost login node
        driver.wait()
    finally:
        left = kill_group(driver.pid)
    killed_at = time.monotonic() - started
    before = trial_runs(uri, "drill-kill")
    finished_before = sum(r.data.tags["divsweep.status"] == "finished" for r in before)
    assert finished_before < len(GRID)

    started = time.monotonic()
    resume = start(
        [DIVSWEEP, "resume", "drill-kill", "--storage-path", raw["storage_path"], "--no-report"],
        tmp_path,
    )
    try:
        _, err = resume.communicate(timeout=300)
    finally:
        kill_group(resume.pid)
    resumed_in = time.monotonic() - started
    assert resume.returncode == 0, err

    after = trial_runs(uri, "drill-kill")
    keys = [r.data.tags["divsweep.trial_key"] for r in after]
    assert len(after) == len(GRID) and len(set(keys)) == len(GRID)  # none missing, none twice
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in after}  # runs continued
    mlf = MlflowClient(uri)
    for run in after:
        assert run.data.tags["divsweep.status"] == "finished" and run.info.status == "FINISHED"
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert sorted(m.step for m in history) == STEPS
    print(f"\ndrill driver SIGKILL: killed after {killed_at:.1f} s with {finished_before}/"
          f"{len(GRID)} finished ({left} leftover Ray processes reaped); resume took "
          f"{resumed_in:.1f} s; {len(after)} child runs, 0 duplicate, 0 missing")  # fmt: skip
