"""Tune wiring: one Tuner per sweep (its searcher picks the trials), plus the driver-side
callbacks.

Tune pickles the RunConfig with the experiment and `Tuner.restore` brings that copy back, so
the callbacks carry only the sweep's key; each finds this driver's live tracker and progress
display in `Callback.setup`, from what `attach` registered before `fit`."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from divsweep import tracking
from divsweep.orchestrator import cost
from divsweep.orchestrator import storage as storage_uri
from divsweep.orchestrator.refresh import Refresher
from divsweep.orchestrator.search import make_searcher
from divsweep.orchestrator.spec import Prices, SweepSpec
from divsweep.orchestrator.tracker import (
    Tracker,
    artifact_record,
    figures_record,
    inputs_record,
    log_record,
    open_record,
    status_record,
)
from divsweep.tracking import Status
from divsweep.trainer import predictions
from divsweep.trainer.callback import MetricNotLogged
from divsweep.trainer.config import flat_params, parse_trial_config, trial_key
from divsweep.workers.trial import DATASETS, PREEMPTED, SYSTEM, TRACKING, preemptible, run_trial

TIME_ATTR = "step"
CHECKPOINTS_KEPT = 2  # the newest to resume from, plus one in case the newest is half-synced
# ASHA needs a horizon; with `train.epochs` the step count depends on each trial's data size,
# so without an explicit max_t the rungs simply keep doubling past any trial's end.
UNBOUNDED_STEPS = 10**9


def scheduler(spec: SweepSpec) -> TrialScheduler:
    if spec.scheduler.kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=spec.selection.metric,
        mode=spec.selection.mode,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
        max_t=spec.scheduler.max_t or _max_steps(spec) or UNBOUNDED_STEPS,
    )


def _max_steps(spec: SweepSpec) -> int | None:
    steps = [t.total_steps if spec.user_study else t.train.max_steps for t in spec.trials()]
    return None if None in steps else max(steps)


def trainable(spec: SweepSpec, function=None):
    """`function` (a Tune function trainable over `config["trial"]`) with the spec's
    resources; the sweep's is run_trial, a test or benchmark may bring a cheap one. (Looked up
    when called, not bound as a default, so a drill can wrap this module's run_trial.)"""
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(preemptible(function or run_trial), resources)


def make_tuner(
    spec: SweepSpec,
    context: dict[str, Any],
    storage: Path,
    name: str,
    callbacks: list[tune.Callback],
    stopper: tune.Stopper | None = None,
    function=None,
) -> tune.Tuner:
    """One Tuner for the whole sweep: its searcher (orchestrator/search.py) hands Tune every
    trial config; `context` (cache dir, ...) travels to every trial unchanged."""
    _quiet_tune()
    searcher = make_searcher(spec)
    return tune.Tuner(
        trainable(spec, function),
        param_space={"divsweep": context},  # what run_trial reads as config["divsweep"]
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler(spec),
            # Tune's cap on trials; the searcher ends the sweep (Searcher.FINISHED) first
            num_samples=searcher.planned or spec.search.max_trials,
            max_concurrent_trials=spec.max_concurrent_trials,
            # a fresh actor per trial costs ~1 s (measured); reuse keeps imports and data
            reuse_actors=True,
        ),
        run_config=run_config(spec, storage, name, callbacks, stopper),
    )


def run_config(
    spec: SweepSpec,
    storage: str | Path,
    name: str,
    callbacks: list[tune.Callback],
    stopper: tune.Stopper | None = None,
) -> tune.RunConfig:
    # a path, or s3:// / gs:// (with a filesystem of our own where an endpoint is configured)
    storage_path, storage_filesystem = storage_uri.tune_path(str(storage))
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        failure_config=tune.FailureConfig(max_failures=spec.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        callbacks=callbacks,
        stop=stopper,
        verbose=0,
    )


def restore_tuner(spec: SweepSpec, path: str | Path, function=None) -> tune.Tuner:
    """The sweep's Tuner as its last driver left it: trials, searcher state and the callbacks,
    which find this driver's tracker and display in `setup` (see `attach`)."""
    _quiet_tune()
    path, filesystem = storage_uri.tune_path(str(path))
    return tune.Tuner.restore(
        path,
        trainable(spec, function),
        resume_unfinished=True,
        restart_errored=True,
        storage_filesystem=filesystem,
    )


@dataclass
class Driver:
    """What this driver process holds for a sweep's callbacks: live objects, never pickled."""

    tracker: Tracker
    progress: ProgressDisplay | None = None
    refresher: Refresher | None = None
    # a mistake in the spec that only a trial could find (a selection metric its module never
    # logs): the sweep stops (`SpecProblemStop`) and the driver reports it as bad input
    problem: str | None = None


_DRIVERS: dict[str, Driver] = {}  # sweep key (its folder) -> this process's live objects


@contextlib.contextmanager
def attach(key: str, driver: Driver) -> Iterator[None]:
    """Register `driver` under `key` while a Tuner of that sweep runs in this process."""
    _DRIVERS[key] = driver
    try:
        yield
    finally:
        _DRIVERS.pop(key, None)


def _driver(key: str) -> Driver:
    if key not in _DRIVERS:
        raise RuntimeError(f"no driver attached for sweep {key}; run fit() inside attach()")
    return _DRIVERS[key]


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
    the resolved config) when a trial starts, each evaluation it reports (with the system
    metrics sampled since the last, and with an attempt's first one its datasets), how it
    ended.
    Pickles (Tune saves its RunConfig) with its settings only; `setup` finds the tracker."""

    def __init__(self, key: str, sweep_name: str, early_stopping: bool):
        self.key, self.sweep_name = key, sweep_name
        # Without an early-stopping scheduler every trial that completes trained to its end.
        self.early_stopping = early_stopping
        self.tracker: Tracker | None = None
        self.placements: dict[str, dict[str, str]] = {}  # trial key -> tags last logged

    def __getstate__(self) -> dict:
        return {"key": self.key, "sweep_name": self.sweep_name, "early": self.early_stopping}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["key"], state["sweep_name"], state["early"])

    def setup(self, **info) -> None:
        self.driver = _driver(self.key)
        self.tracker = self.driver.tracker
        self.placements.clear()  # this driver has tagged nothing yet

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        cfg = parse_trial_config(trial.config["trial"])
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
        if PREEMPTED in report:
            tags = {**tags, tracking.PREEMPTED: report[PREEMPTED]}
        if DATASETS in report:
            self.tracker.submit(inputs_record(key, report[DATASETS]))
        last = _ran_to_end(result)
        self.tracker.submit(log_record(key, metrics, last, tags, system=report[SYSTEM]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        ended = _ran_to_end(trial.last_result or {})
        # A trial that trained to its end closed its run with its last evaluation, unless it
        # was restarted from its final checkpoint after a driver died (its reopened run is
        # closed here). Without early stopping, a trial that reports nothing more also ran to
        # its end (Tune's saved last result predates it); with it, it was stopped.
        status = Status.FINISHED if ended or not self.early_stopping else Status.STOPPED
        key = _key(trial)
        # the last validation's per-example predictions, where the module writes them (the
        # built-in GPT does: trainer/builtin.py)
        if trial.checkpoint is not None:
            checkpoint = trial.checkpoint
            source = storage_uri.location_of(checkpoint.filesystem, checkpoint.path)
            record = artifact_record(
                key, source, predictions.FILE, predictions.ARTIFACT_DIR, optional=True
            )
            self.tracker.submit(record)
        self.tracker.submit(status_record(key, status, unless=(Status.FINISHED, Status.STOPPED)))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._note_problem(trial)
        self.tracker.submit(status_record(_key(trial), Status.FAILED, unless=(Status.FAILED,)))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._note_problem(trial)  # a retry would only fail the same way

    def _note_problem(self, trial) -> None:
        error = trial.get_pickled_error()
        cause = getattr(error, "cause", error)  # Tune wraps what the trial raised
        if isinstance(cause, MetricNotLogged) and self.driver.problem is None:
            self.driver.problem = str(cause)


class SpecProblemStop(tune.Stopper):
    """Stops every trial once a trial has found a mistake in the spec (`Driver.problem`).
    Pickles with the sweep's key only, like the callbacks."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        driver = _DRIVERS.get(self.key)
        return driver is not None and driver.problem is not None


def _key(trial) -> str:
    return trial_key(parse_trial_config(trial.config["trial"]))


def _ran_to_end(result: dict) -> bool:
    """Whether a trial's result is its last evaluation (the one that closes its run)."""
    report = result.get(TRACKING)
    return report is not None and result["step"] >= report["total_steps"]


class ProgressDisplay:
    """A Rich progress bar for a sweep in the foreground: trials done/running/errored and the
    best selection metric so far (`total` None: a search that decides as it goes)."""

    def __init__(self, total: int | None, description: str, metric: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.metric = metric
        self.progress: Any = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, states="")

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def show(self, trials) -> None:
        states = [t.status for t in trials]
        results = [t.last_result or {} for t in trials]
        values = [r[self.metric] for r in results if self.metric in r]
        # NaN: a trial's checkpoint on a preemption notice, before its first evaluation
        best = max((v for v in values if not math.isnan(v)), default=None)
        text = f"running {states.count('RUNNING')}  errored {states.count('ERROR')}" + (
            "" if best is None else f"  best {self.metric} {best:.3f}"
        )
        self.progress.update(
            self.task, completed=states.count("TERMINATED") + states.count("ERROR"), states=text
        )


class KeyedCallback(tune.Callback):
    """A driver-side callback of one sweep that pickles as the sweep's key alone (Tune saves
    its RunConfig with the experiment) and finds this driver's live objects in `setup`."""

    def __init__(self, key: str):
        self.key = key

    def __getstate__(self) -> dict:
        return {"key": self.key}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["key"])


class ProgressCallback(KeyedCallback):
    """Feeds the sweep's progress display (if this driver shows one) as trials change."""

    display: ProgressDisplay | None = None

    def setup(self, **info) -> None:
        self.display = _driver(self.key).progress

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.display is not None:
            self.display.show(trials)

    def on_experiment_end(self, trials, **info) -> None:
        # a restored sweep whose trials had all ended runs no step at all
        if self.display is not None:
            self.display.show(trials)


class RefreshCallback(KeyedCallback):
    """Asks this driver's report refresher (if it runs one) for a refresh as each trial ends."""

    refresher: Refresher | None = None

    def setup(self, **info) -> None:
        self.refresher = _driver(self.key).refresher

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.refresher is not None:
            self.refresher.request()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self.refresher is not None:
            self.refresher.request()


def granted(trial) -> dict[str, float]:
    """The resources Tune placed for the trial (all its bundles): {"CPU": 1.0, "GPU": 0.25}."""
    return dict(trial.placement_group_factory.required_resources)


class CostCallback(tune.Callback):
    """What each trial held (orchestrator/cost.py): an attempt holds the resources Tune placed
    for it (the spec's `resources`) from `on_trial_start` (its actor placed) until
    `on_trial_complete`, `on_trial_error` or `on_trial_recover` (failed, to be retried). When
    an attempt ends, the trial's figures summed so far go to its run (step: attempts so far).
    Pickles with its settings only; `setup` finds the tracker. The sums are Tune's callback
    state (`get_state`/`set_state`), saved and restored with the experiment, so a resumed
    sweep goes on counting: an attempt a dead driver had running counts up to the last save."""

    def __init__(self, key: str, prices: Prices | None):
        self.key, self.prices = key, prices
        self.tracker: Tracker | None = None
        self.held: dict[str, cost.Held] = {}  # trial key -> its attempts that ended
        self.running: dict[str, tuple[float, dict[str, float]]] = {}  # -> (since, resources)

    def __getstate__(self) -> dict:
        prices = None if self.prices is None else self.prices.model_dump()
        return {"key": self.key, "prices": prices}

    def __setstate__(self, state: dict) -> None:
        prices = None if state["prices"] is None else Prices(**state["prices"])
        self.__init__(state["key"], prices)

    def setup(self, **info) -> None:
        self.tracker = _driver(self.key).tracker
        self.running.clear()  # attempts a dead driver had running were counted in its state

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running[_key(trial)] = (time.time(), granted(trial))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._attempt_ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._attempt_ended(trial)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._attempt_ended(trial)

    def _attempt_ended(self, trial) -> None:
        key = _key(trial)
        if key not in self.running:  # stopped before it ever started (a pending trial)
            return
        since, resources = self.running.pop(key)
        held = self.held.setdefault(key, cost.Held())
        held.add(time.time() - since, resources)
        self.tracker.submit(figures_record(key, held.metrics(self.prices), held.attempts))

    def get_state(self) -> dict[str, Any]:
        # an attempt running now counts up to now: if this driver dies, that is what it held
        now, state = time.time(), {k: asdict(h) for k, h in self.held.items()}
        for key, (since, resources) in self.running.items():
            held = cost.Held(**state.get(key, {}))
            held.add(now - since, resources)
            state[key] = asdict(held)
        return {"held": state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.held = {k: cost.Held(**h) for k, h in state["held"].items()}
