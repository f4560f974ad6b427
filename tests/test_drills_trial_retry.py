"""Drill: a trial raises mid-training, after its first checkpoint. Tune's FailureConfig retries
it from that checkpoint; it keeps its one MLflow run and ends with the same metrics, step for
step, as an uninterrupted run of the same config.

The fault is injected from here, without a hook in product code: the sweep's trainable is
wrapped so that, in the worker, `ray.tune.report` raises once right after the first report
that carries a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_orchestrator_spec import tiny_spec

import divsweep
from divsweep import tracking
from divsweep.orchestrator import tuner
from divsweep.orchestrator.spec import parse_spec
from divsweep.tracking import SYSTEM_PREFIX
from divsweep.workers.trial import run_trial

STEPS = [4, 8, 12]
# timings, throughput, what the trial held and system samples (stepped by seconds since the run
# began) differ between any two runs; everything else must not
HELD = (tracking.HELD_S, tracking.GPU_HOURS, tracking.CPU_HOURS)
UNTIMED = {"wall_time_s", "output_tokens_per_s", *HELD}


def failing_once(journal: Path):
    """run_trial, except that its first checkpointed report raises once (a crash mid-training).
    Every attempt's reported steps go to `journal`, so the test sees where the retry restarted.
    A closure, so Ray ships it to the worker by value."""

    def trial(config: dict) -> None:
        import ray.tune

        real = ray.tune.report

        def report(metrics, checkpoint=None):
            real(metrics, checkpoint=checkpoint)
            with open(journal, "a") as f:
                f.write(f"{int(metrics['step'])}\n")
            if checkpoint is not None and "fault" not in journal.read_text():
                with open(journal, "a") as f:
                    f.write("fault\n")
                raise RuntimeError("injected fault after the first checkpoint")

        ray.tune.report = report
        try:
            run_trial(config)
        finally:
            ray.tune.report = real

    return trial


def histories(uri: str, sweep) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    mlf = MlflowClient(uri)
    (run,) = mlf.search_runs(
        [sweep.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}'"
    )
    assert run.data.tags["divsweep.status"] == "finished" and run.info.status == "FINISHED"
    return run.info.run_id, {
        name: [(m.step, m.value) for m in mlf.get_metric_history(run.info.run_id, name)]
        for name in sorted(set(run.data.metrics) - UNTIMED)
        if not name.startswith(SYSTEM_PREFIX)
    }


@pytest.mark.slow
def test_trial_failing_mid_training_resumes_from_its_checkpoint(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {"axes": {"data.n_instructions": [4]}, "train": {"max_steps": 12, "eval_every": 4}}
    clean = divsweep.run(
        parse_spec(tiny_spec(tmp_path, name="drill-clean", **settings)),
        tracking_uri=uri,
        progress=False,
    )

    journal = tmp_path / "journal.txt"
    monkeypatch.setattr(tuner, "run_trial", failing_once(journal))
    started = time.monotonic()
    faulty = divsweep.run(
        parse_spec(tiny_spec(tmp_path, name="drill-fault", retries=1, **settings)),
        tracking_uri=uri,
        progress=False,
    )
    elapsed = time.monotonic() - started

    # reported 4, crashed, and the retry went on from the step-4 checkpoint (not from scratch)
    assert journal.read_text().split() == ["4", "fault", "8", "12"]
    assert not faulty.interrupted
    clean_id, expected = histories(uri, clean)
    faulty_id, got = histories(uri, faulty)  # exactly one child run for the retried trial
    assert faulty_id != clean_id
    assert set(got) == set(expected) and "unseen/exact_match" in got
    for name, history in expected.items():
        assert [step for step, _ in history] == STEPS, name
        assert got[name] == history, name  # no step lost or doubled, same values
    # what it held is summed over its two attempts: one record as each ended
    mlf = MlflowClient(uri)
    for metric in (tracking.HELD_S, tracking.CPU_HOURS):  # (no GPU here: 0 GPU-hours)
        attempts = sorted(mlf.get_metric_history(faulty_id, metric), key=lambda m: m.step)
        assert [m.step for m in attempts] == [1, 2], metric
        assert 0 < attempts[0].value < attempts[1].value, metric
    # the sweep's total: its one trial's, both attempts
    assert mlf.get_run(faulty.parent_run_id).data.metrics[tracking.CPU_HOURS] == attempts[1].value
    print(f"\ndrill retry: {elapsed:.1f} s for the faulty sweep, 1 fault, 1 run, "
          f"{len(got)} metrics x {len(STEPS)} steps equal to the clean run")  # fmt: skip
