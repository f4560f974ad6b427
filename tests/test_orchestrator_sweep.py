"""End-to-end sweeps on the session's real Ray, tracked in real MLflow (SQLite and HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

import divsweep
from divsweep.orchestrator.spec import parse_spec
from divsweep.orchestrator.status import sweep_names, sweep_status
from divsweep.trainer import predictions


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module's sweeps (each its own experiment): MLflow creates a
    store's tables once, which takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def children(mlf: MlflowClient, sweep) -> list:
    return mlf.search_runs(
        [sweep.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}'"
    )


def check_tracked(sweep, n_trials: int) -> list:
    """The MLflow layout of docs/architecture.md: one parent, one finished child per trial."""
    mlf = MlflowClient(sweep.tracking_uri)
    parent = mlf.get_run(sweep.parent_run_id)
    assert parent.data.tags["divsweep.role"] == "sweep"
    assert parent.data.tags["divsweep.sweep"] == sweep.name
    assert parent.data.tags["divsweep.n_trials"] == str(n_trials)
    assert parent.info.status == "FINISHED"
    spec = parse_spec(
        yaml.safe_load(Path(mlf.download_artifacts(sweep.parent_run_id, "spec.yaml")).read_text())
    )
    selection = f"{spec.selection.metric} ({spec.selection.mode})"
    assert parent.data.tags["divsweep.selection"] == selection
    assert parent.data.tags["divsweep.search"] == spec.search.kind
    spec_yaml = Path(mlf.download_artifacts(sweep.parent_run_id, "spec.yaml")).read_text()
    assert parse_spec(yaml.safe_load(spec_yaml)).name == sweep.name

    runs = children(mlf, sweep)
    assert len(runs) == n_trials
    assert len({r.data.tags["divsweep.trial_key"] for r in runs}) == n_trials
    for run in runs:
        tags, params = run.data.tags, run.data.params
        assert tags["divsweep.role"] == "trial" and tags["divsweep.status"] == "finished"
        assert tags["divsweep.accelerator"] == "cpu" and tags["divsweep.node"]
        assert run.info.status == "FINISHED"
        assert {"data.n_instructions", "data.total_examples", "model.d_model", "seed",
                "data.seed"} <= set(params)  # fmt: skip
        history = mlf.get_metric_history(run.info.run_id, "unseen/exact_match")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [4, 8]
        assert {"train/loss", "seen/exact_match", "wall_time_s"} <= set(run.data.metrics)
        check_predictions(mlf, run)
    return runs


def check_predictions(mlf: MlflowClient, run) -> None:
    """The last evaluation's per-example predictions are on the run, and are what its logged
    exact match was computed from."""
    local = mlf.download_artifacts(
        run.info.run_id, f"{predictions.ARTIFACT_DIR}/{predictions.FILE}"
    )
    rows = predictions.read(local)
    assert set(rows["split"]) == {"seen", "unseen", "unseen_val"}
    assert rows["rule_id"].notna().all() and rows["input"].str.len().gt(0).all()
    assert (rows["correct"] == (rows["prediction"] == rows["target"])).all()
    # seen rules are training rules: their patterns are trained on by definition
    assert rows[rows["split"] == "seen"]["pattern_in_training"].all()
    # held-out rules, test and validation: never a training pattern's rule
    assert (
        not rows[rows["split"].str.startswith("unseen")]["rule_id"]
        .isin(rows[rows["split"] == "seen"]["rule_id"])
        .any()
    )
    for split in ("seen", "unseen", "unseen_val"):
        assert rows[rows["split"] == split]["correct"].mean() == pytest.approx(
            run.data.metrics[f"{split}/exact_match"]
        )


def test_sweep_on_local_ray_with_sqlite_mlflow(ray_session, tmp_path: Path, store: str):
    spec = parse_spec(tiny_spec(tmp_path))
    sweep = divsweep.run(spec, tracking_uri=store, progress=False)
    assert not sweep.interrupted
    runs = check_tracked(sweep, n_trials=2)
    assert {r.data.params["data.n_instructions"] for r in runs} == {"4", "16"}
    # what `divsweep status` shows, read back from MLflow
    status = sweep_status(sweep.experiment, store)
    assert status.state == "finished" and status.counts == {"finished": 2}
    assert (status.done, status.n_trials, status.eta_s) == (2, 2, None)
    assert status.best_unseen == max(r.data.metrics["unseen/exact_match"] for r in runs)
    assert sweep.experiment in sweep_names(store)


def test_sweep_against_mlflow_server(ray_session, tmp_path: Path, mlflow_server: str):
    spec = parse_spec(tiny_spec(tmp_path, name="tiny-http", axes={"data.n_instructions": [8]}))
    sweep = divsweep.run(spec, tracking_uri=mlflow_server, progress=False)
    assert sweep.tracking_uri == mlflow_server
    check_tracked(sweep, n_trials=1)


def test_asha_stops_some_trials_early(ray_session, tmp_path: Path, store: str):
    # Tiny trials reach no unseen accuracy at all (every trial ties at 0), so ASHA judges
    # them by training loss here; trials run one at a time so each meets recorded rungs.
    raw = tiny_spec(
        tmp_path,
        name="tiny-asha",
        data={"examples_per_instruction": 4},
        axes={"data.n_instructions": [2, 4, 8, 16, 24]},
        train={"max_steps": 16, "eval_every": 2},
        selection={"metric": "train/loss", "mode": "min"},
        scheduler={"kind": "asha", "grace_period": 2},
        max_concurrent_trials=1,
    )
    sweep = divsweep.run(parse_spec(raw), tracking_uri=store, progress=False)
    mlf = MlflowClient(store)
    runs = children(mlf, sweep)
    status = {r.data.tags["divsweep.status"] for r in runs}
    assert len(runs) == 5 and status <= {"finished", "stopped"}
    stopped = [r for r in runs if r.data.tags["divsweep.status"] == "stopped"]
    finished = [r for r in runs if r.data.tags["divsweep.status"] == "finished"]
    assert stopped and finished
    assert all(r.data.metrics["step"] < 16 and r.info.status == "KILLED" for r in stopped)
    assert all(r.data.metrics["step"] == 16 for r in finished)


def test_fractional_gpus_pack_trials(ray_session, tmp_path: Path, store: str):
    # The session declares 2 (fake) GPUs; half a GPU each allows 4 trials at once, 2 per GPU.
    # CUDA is absent, so the trials train on CPU, each on the GPU id Ray assigned it.
    raw = tiny_spec(
        tmp_path,
        name="tiny-gpu",
        axes={"data.n_instructions": [2, 4, 8], "data.examples_per_instruction": [4, 8]},
        # trials of a few seconds: shorter ones can end before the next starts, hiding packing
        train={"max_steps": 240, "eval_every": 120},
        resources={"cpu": 0.5, "gpu": 0.5},
    )
    sweep = divsweep.run(parse_spec(raw), tracking_uri=store, progress=False)
    runs = children(MlflowClient(store), sweep)
    assert len(runs) == 6
    spans = [(r.info.start_time, r.info.end_time, r.data.tags["divsweep.gpu_ids"]) for r in runs]
    assert {gpu for _, _, gpu in spans} == {"0", "1"}  # one id each, both GPUs used
    assert all(r.data.tags["divsweep.accelerator"] == "cpu" for r in runs)
    assert 3 <= max_overlap(spans) <= 4
    for gpu in ("0", "1"):
        assert max_overlap([s for s in spans if s[2] == gpu]) <= 2


def max_overlap(spans: list[tuple[int, int, str]]) -> int:
    events = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    running = peak = 0
    for _, delta in events:  # an end sorts before a start at the same instant
        running += delta
        peak = max(peak, running)
    return peak
