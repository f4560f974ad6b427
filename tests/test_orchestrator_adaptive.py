"""Adaptive search: the next round is read from the sweep's MLflow runs (the system of record)."""

from __future__ import annotations

from pathlib import Path

from test_orchestrator_spec import tiny_spec

from divsweep import tracking
from divsweep.orchestrator.run import Sweep, _refine
from divsweep.orchestrator.spec import parse_spec
from divsweep.trainer.config import flat_params, trial_key


def logged_sweep(tmp_path: Path, uri: str, spec, unseen: dict[int, list[float]]) -> Sweep:
    """A sweep whose trials logged the given final unseen accuracies (one per seed)."""
    mlf = tracking.client(uri)
    exp_id = tracking.experiment_id(mlf, spec.experiment)
    parent = tracking.start_parent(mlf, exp_id, spec.name, spec.to_yaml(), len(spec.trials()))
    for trial in spec.trials():
        accuracy = unseen[trial.data.n_instructions][trial.seed]
        key = trial_key(trial)
        tags = {tracking.PARENT: parent}
        run_id = tracking.create_trial_run(mlf, exp_id, key, key, flat_params(trial), tags)
        tracking.log_metrics(mlf, run_id, {"unseen/exact_match": accuracy}, 8, last=True)
    return Sweep(
        name=spec.name,
        experiment=spec.experiment,
        experiment_id=exp_id,
        parent_run_id=parent,
        tracking_uri=uri,
        directory=str(tmp_path),
        spec_yaml=spec.to_yaml(),
        round_sizes=[len(spec.trials())],
    )


def test_refine_adds_the_midpoint_of_the_steepest_step(tmp_path: Path, tracking_uri: str):
    raw = tiny_spec(
        tmp_path,
        data={"n_instructions": [2, 8, 32], "seeds": [0, 1]},
        search={"kind": "adaptive", "resolution": 1.5, "max_rounds": 3},
    )
    spec = parse_spec(raw)
    # mean accuracy per n: 2 -> 0.0, 8 -> 0.1, 32 -> 0.9: the jump is between 8 and 32
    sweep = logged_sweep(tmp_path, tracking_uri, spec, {2: [0.0, 0.0], 8: [0.0, 0.2], 32: [1, 0.8]})
    trials = _refine(tracking.client(tracking_uri), sweep, spec)
    assert {t.data.n_instructions for t in trials} == {16}
    assert len(trials) == 2  # every other axis (both seeds) at the new point

    sweep.round_sizes.append(2)
    sweep.round_sizes.append(2)  # max_rounds reached: no more refinement
    assert _refine(tracking.client(tracking_uri), sweep, spec) == []


def test_grid_search_never_refines(tmp_path: Path, tracking_uri: str):
    spec = parse_spec(tiny_spec(tmp_path, data={"n_instructions": [2, 32]}))
    sweep = logged_sweep(tmp_path, tracking_uri, spec, {2: [0.0], 32: [1.0]})
    assert _refine(tracking.client(tracking_uri), sweep, spec) == []
