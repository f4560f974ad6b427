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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import trial_runs
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

from divsweep.trainer.pause import PAUSE_AT_STEP, PAUSE_DIR, paused, release

DIVSWEEP = str(Path(sys.executable).with_name("divsweep"))
# the kill leaves one done, one half-done (paused at its first evaluation), three not begun
GRID = [2, 4, 8, 16, 24]
STEPS = [50, 100, 150, 200]


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


def run_to_end(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 600
) -> tuple[int, str]:
    """Run a divsweep command to its end in its own process group (reaped whatever happens);
    returns its exit code and stderr."""
    proc = start(cmd, cwd, env)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    finally:
        kill_group(proc.pid)
    return proc.returncode, err


def wait_for(condition, what: str, driver: subprocess.Popen, timeout_s: float = 300):
    """What `condition()` returns once it is truthy: an event the sweep makes happen (a file a
    paused trial writes, a state MLflow reaches). Fails at once if the driver ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert driver.poll() is None, f"sweep ended before {what}: {driver.stderr.read()}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s:.0f} s")


def pause_env(pauses: Path, step: int) -> dict[str, str]:
    """The driver's environment with every trial pausing at `step` (trainer/pause.py)."""
    return {**os.environ, PAUSE_DIR: str(pauses), PAUSE_AT_STEP: str(step)}


def kill_once_tracked(
    driver: subprocess.Popen, uri: str, experiment: str, finished: set[str], mid: str, step: int
) -> None:
    """SIGKILL the driver once MLflow shows the `finished` trials finished and the paused trial
    `mid` at `step`: the state a resume must continue from is on record."""

    def tracked() -> bool:
        runs = {r.data.tags["divsweep.trial_key"]: r for r in trial_runs(uri, experiment)}
        done = all(
            key in runs and runs[key].data.tags.get("divsweep.status") == "finished"
            for key in finished
        )
        return done and mid in runs and runs[mid].data.metrics.get("step", 0) >= step

    wait_for(tracked, "MLflow to show the paused state", driver)
    driver.kill()  # SIGKILL: a crash, the OOM killer, a lost login node
    driver.wait()


def release_in_turn(driver: subprocess.Popen, pauses: Path, n: int) -> set[str]:
    """Let `n` trials of a sweep run one at a time (started with `pause_env`) go, each as it
    pauses; returns their keys."""
    released: set[str] = set()
    for _ in range(n):
        (key,) = wait_for(lambda: paused(pauses) - released, "the next trial to pause", driver)
        release(pauses, key)
        released.add(key)
    return released


@contextlib.contextmanager
def releasing(pauses: Path) -> Iterator[set[str]]:
    """Within the block, a thread lets every trial that pauses go; yields the keys released so
    far. A thread, so that the caller can keep reading the driver's output meanwhile."""
    released: set[str] = set()
    done = threading.Event()

    def let_go() -> None:
        while not done.wait(0.2):
            for key in paused(pauses) - released:
                release(pauses, key)
                released.add(key)

    thread = threading.Thread(target=let_go, daemon=True)
    thread.start()
    try:
        yield released
    finally:
        done.set()
        thread.join()


def kill_one_done_one_paused(
    driver: subprocess.Popen, pauses: Path, uri: str, experiment: str, step: int
) -> None:
    """SIGKILL a sweep of trials run one at a time (started with `pause_env`) at a known point:
    the first trial pauses at `step`; released, it finishes and the second pauses at `step`;
    once MLflow shows the first finished and the second's evaluation, the driver is killed,
    the rest not begun."""
    first = release_in_turn(driver, pauses, 1)
    (second,) = wait_for(lambda: paused(pauses) - first, "a second trial to pause", driver)
    kill_once_tracked(driver, uri, experiment, first, second, step)


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
    pauses = tmp_path / "pauses"
    env = pause_env(pauses, STEPS[0])
    driver = start(
        [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"], tmp_path, env
    )
    try:
        kill_one_done_one_paused(driver, pauses, uri, "drill-kill", STEPS[0])
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
