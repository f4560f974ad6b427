"""Run a sweep (and resume one): build the data, open the MLflow parent, run one Tuner.

A sweep lives in `<storage_path>/<name>-<parent run id[:8]>/`: `sweep.json` (what resume
needs: spec, tracking URI, parent run) and its one Tune experiment, `trials/` (trial states,
checkpoints, and the searcher's state, so every search kind resumes where it stopped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from divsweep import tracking
from divsweep.errors import UserError
from divsweep.orchestrator.spec import SweepSpec, load_spec, parse_spec
from divsweep.orchestrator.tracker import JOURNAL_FILE, Tracker

STATE_FILE = "sweep.json"
TUNE_DIR = "trials"  # the sweep's Tune experiment, inside its folder
DEFAULT_STORAGE = Path(".divsweep/ray_results")


@dataclass
class Sweep:
    """What a running or finished sweep is; saved as sweep.json beside its Tune experiment."""

    name: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    directory: str
    spec_yaml: str
    interrupted: bool = False

    @property
    def spec(self) -> SweepSpec:
        return parse_spec(yaml.safe_load(self.spec_yaml))

    def save(self) -> None:
        path = Path(self.directory) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)


def run(
    spec: SweepSpec | str | Path,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
) -> Sweep:
    """Run a sweep (a spec file or a loaded `SweepSpec`) on local Ray or the cluster at
    `address`; every trial is an MLflow run under the sweep's parent run. Returns the sweep;
    after Ctrl-C `.interrupted` is set, and `resume(name)` goes on from there."""
    from divsweep.datasets import build_all
    from divsweep.orchestrator.search import make_searcher

    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    uri = tracking.absolute_uri(tracking_uri or spec.tracking.uri)
    # unreachable services fail in seconds, before any data is built or run is opened
    tracking.check_reachable(uri, create=True)
    check_address(address)
    # every grid point's dataset once, before any trial: workers then only attach (or build
    # on a node that lacks the file, or a point a search adds), and a data problem fails the
    # sweep before Ray starts
    build_all(spec.data_configs(), cache_dir=spec.cache_dir, progress=progress)

    mlf = tracking.client(uri)
    exp_id = tracking.experiment_id(mlf, spec.experiment)
    planned = make_searcher(spec).planned or len(spec.grid())
    parent = tracking.start_parent(mlf, exp_id, spec.name, spec.to_yaml(), planned)
    directory = spec.storage_path / f"{spec.name}-{parent[:8]}"
    directory.mkdir(parents=True, exist_ok=True)
    tracking.retrying(mlf.set_tag, parent, "divsweep.sweep_dir", str(directory))
    sweep = Sweep(
        name=spec.name,
        experiment=spec.experiment,
        experiment_id=exp_id,
        parent_run_id=parent,
        tracking_uri=uri,
        directory=str(directory),
        spec_yaml=spec.to_yaml(),
    )
    sweep.save()
    connect(address)
    with _tracker(sweep, new_sweep=True) as sweep_tracker:
        return _fit(sweep, spec, sweep_tracker, progress, restore=False)


def resume(
    experiment: str,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    progress: bool = True,
) -> Sweep:
    """Go on with an interrupted sweep: finished trials are kept, unfinished ones continue
    from their last checkpoint, each in its own MLflow run."""
    check_address(address)
    sweep = locate(experiment, tracking_uri=tracking_uri, storage_path=storage_path)
    spec = sweep.spec
    tracking.check_reachable(sweep.tracking_uri)
    mlf = tracking.client(sweep.tracking_uri)
    tracking.set_status(mlf, sweep.parent_run_id, "running")
    connect(address)
    sweep.interrupted = False
    # the new tracker first sends what the old driver's had journaled and not yet sent
    with _tracker(sweep, new_sweep=False) as sweep_tracker:
        return _fit(sweep, spec, sweep_tracker, progress, restore=True)


def _fit(sweep: Sweep, spec: SweepSpec, sweep_tracker: Tracker, progress: bool, restore: bool):
    """Run the sweep's Tuner (a new one, or the saved one restored) to its end or a Ctrl-C."""
    from divsweep.orchestrator.search import make_searcher
    from divsweep.orchestrator.tuner import (
        Driver,
        ProgressCallback,
        ProgressDisplay,
        TrackingCallback,
        attach,
        make_tuner,
        restore_tuner,
    )

    mlf = tracking.client(sweep.tracking_uri)
    folder = Path(sweep.directory)
    planned = make_searcher(spec).planned
    display = ProgressDisplay(planned, sweep.name, spec.selection.metric) if progress else None
    # the callbacks carry the sweep's key only (Tune pickles them with the experiment); they
    # find this driver's tracker and display under that key when Tune sets them up
    if restore:
        tuner = restore_tuner(spec, folder / TUNE_DIR)
    else:
        early_stopping = spec.scheduler.kind != "fifo"
        callbacks = [
            TrackingCallback(sweep.directory, sweep.name, early_stopping),
            ProgressCallback(sweep.directory),
        ]
        context = {"cache_dir": None if spec.cache_dir is None else str(spec.cache_dir)}
        tuner = make_tuner(spec, context, folder, TUNE_DIR, callbacks)
    with (
        attach(sweep.directory, Driver(sweep_tracker, display)),
        display or contextlib.nullcontext(),
    ):
        grid = tuner.fit()
    # what the trials logged is in MLflow before the sweep says it ended
    _drain(sweep_tracker, sweep)
    tracking.retrying(mlf.set_tag, sweep.parent_run_id, "divsweep.n_trials", str(len(grid)))
    if _cut_off(grid, spec, folder / TUNE_DIR):
        return _interrupted(mlf, sweep)
    tracking.set_status(mlf, sweep.parent_run_id, "finished")
    return sweep


def _cut_off(grid, spec: SweepSpec, experiment_dir: Path) -> bool:
    # Tune returns normally on Ctrl-C (after saving its state), with trials left unfinished
    # or not even suggested yet: the saved searcher says whether any are left
    from divsweep.orchestrator.search import finished

    ended = grid.num_terminated + grid.num_errors
    return ended < len(grid) or not finished(spec, str(experiment_dir))


def _interrupted(mlf, sweep: Sweep) -> Sweep:
    sweep.interrupted = True
    sweep.save()
    tracking.set_status(mlf, sweep.parent_run_id, "stopped")
    return sweep


@contextlib.contextmanager
def _tracker(sweep: Sweep, new_sweep: bool) -> Iterator[Tracker]:
    """The sweep's tracker while this driver runs it (a resumed sweep's first sends what the
    last driver had journaled and not sent)."""
    journal = Path(sweep.directory) / JOURNAL_FILE
    sweep_tracker = Tracker(
        sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id, journal, new_sweep
    )
    try:
        yield sweep_tracker
    finally:
        sweep_tracker.close()


def _drain(sweep_tracker: Tracker, sweep: Sweep) -> None:
    """Wait until MLflow holds every record so far, or fail naming the journal keeping them."""
    left, refusal = sweep_tracker.drain()
    if not left:
        return
    kept = (
        f"{left} records not yet in MLflow are kept in {sweep_tracker.journal.path}; "
        f"`divsweep resume {sweep.experiment}` sends them"
    )
    uri = sweep.tracking_uri
    if refusal is not None:
        raise UserError(f"MLflow at {uri} refused a record: {refusal}; {kept}")
    raise UserError(f"MLflow at {uri} did not answer for {tracking.retry_s():.0f} s; {kept}")


def check_address(address: str | None) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing listens on fails at once, not after
    ray.init's minute of reconnect attempts."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {err}") from None


def connect(address: str | None) -> None:
    """Join the given Ray cluster, or start Ray in this process; reuse one already running."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # No address means a Ray of our own: bare ray.init() would join any `ray start` cluster
    # recorded on this machine. RAY_ADDRESS still picks one (as `ray job submit` sets it).
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    # Worker logs would scroll the progress display away; what matters is in MLflow.
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except ConnectionError as err:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {err}") from None


def locate(
    experiment: str,
    *,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
) -> Sweep:
    """Find the newest sweep of `experiment`: in the storage folder, else via its MLflow
    parent run (spec artifact + `divsweep.sweep_dir` tag)."""
    storage = Path(storage_path or DEFAULT_STORAGE).expanduser().resolve()
    states = sorted(storage.glob(f"*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in states:
        sweep = Sweep(**json.loads(path.read_text()))
        if sweep.experiment == experiment and (
            tracking_uri is None or sweep.tracking_uri == tracking.absolute_uri(tracking_uri)
        ):
            return sweep
    return _locate_in_mlflow(experiment, tracking_uri or "sqlite:///mlflow.db", storage)


def _locate_in_mlflow(experiment: str, uri: str, storage: Path) -> Sweep:
    import mlflow.artifacts

    uri = tracking.absolute_uri(uri)
    try:
        tracking.check_reachable(uri)
    except UserError as err:
        raise UserError(
            f"no sweep found for experiment {experiment!r} in {storage}; {err}"
        ) from None
    mlf = tracking.client(uri)
    exp_id = tracking.experiment_id(mlf, experiment, create=False)
    parent = tracking.find_parent(mlf, exp_id)
    if parent is None:
        raise UserError(f"no sweep found for experiment {experiment!r} in {storage} or {uri}")
    directory = Path(parent.data.tags.get("divsweep.sweep_dir", ""))
    if not (directory / STATE_FILE).is_file():
        raise UserError(
            f"sweep {experiment!r} is in MLflow but its Tune folder {directory} is not on "
            "this machine; resume it where it ran, or pass --storage-path"
        )
    sweep = Sweep(**json.loads((directory / STATE_FILE).read_text()))
    local = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="spec.yaml", tracking_uri=uri
    )
    sweep.spec_yaml = Path(local).read_text()
    return sweep
