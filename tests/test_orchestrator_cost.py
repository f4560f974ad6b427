"""What a sweep cost: a real sweep on the session's Ray (fake GPUs, half of one per trial),
tracked in real MLflow; the figures on each trial's run, the totals on the parent run and in
the report, and money at the spec's prices."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

import divsweep
from divsweep import tracking
from divsweep.orchestrator.report.collect import collect
from divsweep.orchestrator.spec import parse_spec

PRICES = {"gpu_hour": 2.5, "cpu_hour": 0.04, "currency": "EUR"}


def test_trials_carry_what_they_held_and_the_sweep_their_sum(
    ray_session, tmp_path: Path, tracking_uri: str
):
    raw = tiny_spec(tmp_path, name="tiny-cost", resources={"cpu": 1, "gpu": 0.5}, cost=PRICES)
    sweep = divsweep.run(parse_spec(raw), tracking_uri=tracking_uri, progress=False)
    mlf = MlflowClient(tracking_uri)
    runs = tracking.trial_runs(mlf, sweep.experiment_id, sweep.parent_run_id)
    assert len(runs) == 2
    for run in runs:
        m = run.data.metrics
        # the attempt held its resources from before training began until after its last
        # evaluation: longer than the trial's own training clock
        assert m[tracking.HELD_S] > m["wall_time_s"] > 0
        assert m[tracking.GPU_HOURS] == pytest.approx(0.5 * m[tracking.HELD_S] / 3600)
        assert m[tracking.CPU_HOURS] == pytest.approx(1.0 * m[tracking.HELD_S] / 3600)
        money = 2.5 * m[tracking.GPU_HOURS] + 0.04 * m[tracking.CPU_HOURS]
        assert m[tracking.MONEY] == pytest.approx(money)
        # one attempt each: one record, at step 1
        history = mlf.get_metric_history(run.info.run_id, tracking.HELD_S)
        assert [h.step for h in history] == [1]

    parent = mlf.get_run(sweep.parent_run_id)
    for metric in (tracking.GPU_HOURS, tracking.CPU_HOURS, tracking.MONEY):
        total = sum(r.data.metrics[metric] for r in runs)
        assert parent.data.metrics[metric] == pytest.approx(total)
    assert parent.data.params["cost.gpu_hour"] == "2.5"

    html = divsweep.report(
        sweep.experiment, tracking_uri=tracking_uri, out_dir=tmp_path / "report"
    ).read_text()
    gpu, cpu, money = (
        parent.data.metrics[m] for m in (tracking.GPU_HOURS, tracking.CPU_HOURS, tracking.MONEY)
    )
    assert f"Cost: {gpu:.4g} GPU-hours and {cpu:.4g} CPU-hours" in html
    assert f"{money:.4g} EUR at 2.5 EUR per GPU-hour and 0.04 EUR per CPU-hour" in html
    # per trial, in the trials table (and its files)
    trials = collect(sweep.experiment, tracking_uri).trials
    each = sorted(r.data.metrics[tracking.MONEY] for r in runs)
    assert sorted(trials["money"]) == pytest.approx(each)
    assert '<th onclick="sortTable(this)">GPU-h</th>' in html
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| GPU-h | CPU-h | cost |" in md


def test_a_sweep_without_prices_states_hours_only(ray_session, tmp_path: Path, tracking_uri: str):
    raw = tiny_spec(tmp_path, name="tiny-unpriced", axes={"data.n_instructions": [4]})
    sweep = divsweep.run(parse_spec(raw), tracking_uri=tracking_uri, progress=False)
    parent = MlflowClient(tracking_uri).get_run(sweep.parent_run_id)
    assert tracking.MONEY not in parent.data.metrics
    assert parent.data.metrics[tracking.GPU_HOURS] == 0
    assert parent.data.metrics[tracking.CPU_HOURS] > 0
    html = divsweep.report(
        sweep.experiment, tracking_uri=tracking_uri, out_dir=tmp_path / "report"
    ).read_text()
    assert "no prices in the spec" in html
