"""Drill: an adaptive sweep's driver is SIGKILLed while the searcher is refining; `divsweep
resume` restores the Tuner with its searcher state and finishes the search: every point once
(no MLflow run twice, no step logged twice), refinements for each budget, the parent finished."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import trial_runs
from mlflow import MlflowClient
from ray.tune import ExperimentAnalysis
from test_drills_driver_kill import (
    DIVSWEEP,
    kill_group,
    kill_once_tracked,
    pause_env,
    release_in_turn,
    start,
    wait_for,
)
from test_orchestrator_spec import tiny_spec

from divsweep.trainer.pause import paused

STEPS = [10, 20, 30, 40]
BUDGETS = [32, 64]
GRID = [2, 16]
MAX_TRIALS = 10


@pytest.mark.slow
def test_adaptive_sweep_survives_driver_sigkill(tmp_path: Path) -> None:
    raw = tiny_spec(
        tmp_path,
        name="drill-adaptive",
        data={"examples_per_instruction": None},
        axes={"data.n_instructions": GRID, "data.budget": BUDGETS},
        train={"max_steps": STEPS[-1], "eval_every": STEPS[0]},
        # tiny trials reach no unseen accuracy (flat: nothing to refine); loss differs with I
        selection={"metric": "train/loss", "mode": "min"},
        search={"kind": "adaptive", "resolution": 1.5, "max_trials": MAX_TRIALS},
        max_concurrent_trials=1,
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Every trial pauses at its first evaluation (trainer/pause.py); one runs at a time, so the
    # grid's trials are let go in turn, and the first one past the grid is the searcher's
    # refinement: the driver is killed while it is paused there, on record in MLflow.
    pauses = tmp_path / "pauses"
    cmd = [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"]
    driver = start(cmd, tmp_path, pause_env(pauses, STEPS[0]))
    try:
        grid = release_in_turn(driver, pauses, len(GRID) * len(BUDGETS))
        (refining,) = wait_for(lambda: paused(pauses) - grid, "a refinement to pause", driver)
        kill_once_tracked(driver, uri, "drill-adaptive", grid, refining, STEPS[0])
    finally:
        kill_group(driver.pid)
    before = trial_runs(uri, "drill-adaptive")

    resume = start(
        [DIVSWEEP, "resume", "drill-adaptive", "--storage-path", raw["storage_path"],
         "--no-report"],
        tmp_path,
    )  # fmt: skip
    try:
        _, err = resume.communicate(timeout=600)
    finally:
        kill_group(resume.pid)
    assert resume.returncode == 0, err

    after = trial_runs(uri, "drill-adaptive")
    points = [(r.data.params["data.n_instructions"], r.data.params["data.budget"]) for r in after]
    assert len(set(points)) == len(after) <= MAX_TRIALS  # every point once
    assert len(after) > len(before)  # the search went on after the kill
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in after}
    for budget in BUDGETS:  # each budget refined its own bracket
        ns = {int(n) for n, b in points if b == str(budget)}
        assert set(GRID) < ns, (budget, ns)
    mlf = MlflowClient(uri)
    for run in after:
        assert run.data.tags["divsweep.status"] == "finished"
        history = mlf.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == STEPS  # no step logged twice
    (parent,) = mlf.search_runs(
        [after[0].info.experiment_id], filter_string="tags.`divsweep.role` = 'sweep'"
    )
    assert parent.data.tags["divsweep.status"] == "finished"
    assert parent.data.tags["divsweep.n_trials"] == str(len(after))
    # Tune ran each point as one trial: a searcher that forgot its state would hand the grid
    # out again as new trials (their runs found by key, so MLflow alone would not show it)
    (experiment,) = Path(raw["storage_path"]).glob("*/trials")
    assert len(ExperimentAnalysis(str(experiment)).trials) == len(after)
