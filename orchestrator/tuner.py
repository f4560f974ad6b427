"""Tune wiring: one Tuner per round of a sweep, plus the driver-side callbacks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from divsweep import tracking
from divsweep.orchestrator.spec import SweepSpec
from divsweep.orchestrator.tracker import (
    Tracker,
    inputs_record,
    log_record,
    open_record,
    status_record,
)
from divsweep.trainer.config import TrialConfig, flat_params, trial_key
from divsweep.workers.trial import DATASETS, TRACKING, run_trial

METRIC, TIME_ATTR = "unseen/exact_match", "step"
CHECKPOINTS_KEPT = 2  # the newest to resume from, plus one in case the newest is half-synced
# ASHA needs a horizon; with `train.epochs` the step count depends on each trial's data size,
# so without an explicit max_t the rungs simply keep doubling past any trial's end.
UNBOUNDED_STEPS = 10**9


def scheduler(spec: SweepSpec) -> TrialScheduler:
    if spec.scheduler.kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=spec.scheduler.metric,
        mode=spec.scheduler.mode,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
        max_t=spec.scheduler.max_t or spec.train.max_steps or UNBOUNDED_STEPS,
    )


def trainable(spec: SweepSpec):
    return tune.with_resources(run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def make_tuner(
    spec: SweepSpec,
    trials: list[TrialConfig],
    context: dict[str, Any],
    storage: Path,
    name: str,
    callbacks: list[tune.Callback],
) -> tune.Tuner:
    from divsweep.orchestrator.space import param_space

    _quiet_tune()
    return tune.Tuner(
        trainable(spec),
        param_space=param_space(trials, context),
        tune_config=tune.TuneConfig(
            scheduler=scheduler(spec),
            num_samples=1,
            max_concurrent_trials=spec.max_concurrent_trials,
            # a fresh actor per trial costs ~1 s (measured); reuse keeps imports and data
            reuse_actors=True,
        ),
        run_config=run_config(spec, storage, name, callbacks),
    )


def run_config(
    spec: SweepSpec, storage: Path, name: str, callbacks: list[tune.Callback]
) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(storage),
        failure_config=tune.FailureConfig(max_failures=spec.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        callbacks=callbacks,
        verbose=0,
    )


def restore_tuner(spec: SweepSpec, path: Path, callbacks: list[tune.Callback]) -> tune.Tuner:
    _quiet_tune()
    tuner = tune.Tuner.restore(
        str(path), trainable(spec), resume_unfinished=True, restart_errored=True
    )
    # The saved state holds the old driver's callbacks (the progress display pickles as inert);
    # Tuner.restore takes no RunConfig, so the new driver's ones are set on the restored one.
    if tuner._local_tuner is not None:
        tuner._local_tuner._run_config.callbacks = callbacks
    return tuner


def _quiet_tune() -> None:
    # Tune's per-trial chatter would scroll the progress display away; errors still show.
    logging.getLogger("ray").setLevel(logging.ERROR)
    # a snapshot after every `num_to_keep` checkpoints is cheap on local disk; no warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # MLflow is the record of results; Tune's own CSV/JSON/TensorBoard files would only cost time.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # the new console output prints its experiment table even at verbose=0; the old one is silent
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


class TrackingCallback(tune.Callback):
    """Tune's trial events, as MLflow records for the sweep's tracker: a run opened (params:
    the resolved config) when a trial starts, each evaluation it reports (and with an
    attempt's first one, its datasets), how it ended.
    Pickles (Tune saves its RunConfig) as an inert copy; resume brings a new one."""

    def __init__(self, sweep_tracker: Tracker, sweep_name: str, early_stopping: bool):
        self.tracker, self.sweep_name = sweep_tracker, sweep_name
        # Without an early-stopping scheduler every trial that completes trained to its end.
        self.early_stopping = early_stopping
        self.placements: dict[str, dict[str, str]] = {}  # trial key -> tags last logged

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.tracker = None

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        cfg = TrialConfig.model_validate(trial.config["trial"])
        key = trial_key(cfg)
        self.placements.pop(key, None)  # a retry may land elsewhere: tag it again
        record = open_record(key, flat_params(cfg), {tracking.SWEEP: self.sweep_name})
        self.tracker.submit(record)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        report = result[TRACKING]
        key = _key(trial)
        metrics = {name: result[name] for name in report["metrics"]}
        # a new placement is tagged with the attempt's first evaluation
        tags = {} if self.placements.get(key) == report["tags"] else report["tags"]
        self.placements[key] = report["tags"]
        if DATASETS in report:
            self.tracker.submit(inputs_record(key, report[DATASETS]))
        self.tracker.submit(log_record(key, metrics, _ran_to_end(result), tags))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        ended = _ran_to_end(trial.last_result or {})
        # A trial that trained to its end closed its run with its last evaluation, unless it
        # was restarted from its final checkpoint after a driver died (its reopened run is
        # closed here). Without early stopping, a trial that reports nothing more also ran to
        # its end (Tune's saved last result predates it); with it, it was stopped.
        status = "finished" if ended or not self.early_stopping else "stopped"
        self.tracker.submit(status_record(_key(trial), status, unless=("finished", "stopped")))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.tracker.submit(status_record(_key(trial), "failed", unless=("failed",)))


def _key(trial) -> str:
    return trial_key(TrialConfig.model_validate(trial.config["trial"]))


def _ran_to_end(result: dict) -> bool:
    """Whether a trial's result is its last evaluation (the one that closes its run)."""
    report = result.get(TRACKING)
    return report is not None and result["step"] >= report["total_steps"]


class ProgressCallback(tune.Callback):
    """A Rich progress bar for a sweep in the foreground: trials done/running/errored and the
    best unseen accuracy so far. Pickles (Tune saves its RunConfig) as an inert copy."""

    def __init__(self, total: int, description: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Any = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, states="")

    def __enter__(self) -> ProgressCallback:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.progress = None

    def on_step_end(self, iteration, trials, **info) -> None:
        self._show(trials)

    def on_experiment_end(self, trials, **info) -> None:
        # a restored round whose trials had all ended runs no step at all
        self._show(trials)

    def _show(self, trials) -> None:
        if self.progress is None:
            return
        states = [t.status for t in trials]
        best = max(
            (t.last_result[METRIC] for t in trials if METRIC in (t.last_result or {})),
            default=None,
        )
        text = f"running {states.count('RUNNING')}  errored {states.count('ERROR')}" + (
            "" if best is None else f"  best unseen {best:.3f}"
        )
        self.progress.update(
            self.task, completed=states.count("TERMINATED") + states.count("ERROR"), states=text
        )
