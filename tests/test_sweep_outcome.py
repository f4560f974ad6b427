"""A sweep whose trials failed is loud: `divsweep run` exits 1, its summary line counts the
trials by how they ended, the parent run is FAILED, and the report still renders what
finished. The failure is a real trial raising in a real Ray worker (the trainable wrapped
from here, no hook in product code)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from conftest import trial_runs
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

from divsweep import cli, tracking
from divsweep.orchestrator import tuner
from divsweep.orchestrator.cli import FAILED_EXIT

FAILING_N = 4  # the trial with this many instructions raises before it trains


def failing_for(n_instructions: int):
    """A wrapper making `function` raise for one grid point; a closure, so Ray ships it to
    the worker by value."""

    def wrap(function):
        def trial(config: dict) -> None:
            if config["trial"]["data"]["n_instructions"] == n_instructions:
                raise RuntimeError(f"injected failure for n_instructions={n_instructions}")
            function(config)

        return trial

    return wrap


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`divsweep ARGS` in this process (its Ray is the session's); returns the exit code."""
    monkeypatch.setattr(sys, "argv", ["divsweep", *args])
    try:
        cli.main()
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


def test_failed_trial_exits_1_counts_outcomes_and_fails_the_parent(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    raw = tiny_spec(tmp_path, name="outcome-failed", axes={"data.n_instructions": [2, FAILING_N]})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real = tuner.trainable
    wrap = failing_for(FAILING_N)
    monkeypatch.setattr(tuner, "trainable", lambda s, f=None: real(s, wrap(f or tuner.run_trial)))
    monkeypatch.chdir(tmp_path)  # the report folder

    code = run_cli(["run", str(spec), "--tracking-uri", uri], monkeypatch)
    out, err = capsys.readouterr()

    assert code == FAILED_EXIT
    assert "sweep outcome-failed ended with failed trials: 1 finished, 1 failed, 0 stopped" in out
    assert "1 trial(s) failed" in err
    assert "report: " in out  # what finished is still reported
    report = Path(out.split("report: ")[1].split()[0])
    assert report.is_file()
    runs = {r.data.params["data.n_instructions"]: r for r in trial_runs(uri, "outcome-failed")}
    assert runs[str(FAILING_N)].info.status == "FAILED"
    assert runs["2"].info.status == "FINISHED"
    mlf = MlflowClient(uri)
    parent = tracking.find_parent(mlf, mlf.get_experiment_by_name("outcome-failed").experiment_id)
    assert parent.info.status == "FAILED" and parent.data.tags[tracking.STATUS] == "failed"


def test_sweep_whose_trials_all_finished_exits_0(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    raw = tiny_spec(tmp_path, name="outcome-ok", axes={"data.n_instructions": [2]})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = run_cli(["run", str(spec), "--tracking-uri", uri, "--no-report"], monkeypatch)
    out, _ = capsys.readouterr()
    assert code == 0
    assert "sweep outcome-ok finished: 1 finished, 0 failed, 0 stopped" in out
    mlf = MlflowClient(uri)
    parent = tracking.find_parent(mlf, mlf.get_experiment_by_name("outcome-ok").experiment_id)
    assert parent.info.status == "FINISHED"
