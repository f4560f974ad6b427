"""Run a sweep (and resume one): build the data, open the MLflow parent, run one Tuner.

A sweep lives in `<storage_path>/<name>-<parent run id[:8]>/`: `sweep.json` (what resume
needs: spec, tracking URI, parent run) and its one Tune experiment, `trials/` (trial states,
checkpoints, and the searcher's state, so every search kind resumes where it stopped).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from divsweep import tracking
from divsweep.errors import UserError
from divsweep.orchestrator import cost, storage
from divsweep.orchestrator.refresh import Refresher
from divsweep.orchestrator.spec import SweepSpec, load_spec, parse_spec
from divsweep.orchestrator.tracker import JOURNAL_FILE, Tracker
from divsweep.tracking import Status

STATE_FILE = "sweep.json"
TUNE_DIR = "trials"  # the sweep's Tune experiment, inside its folder
DEFAULT_STORAGE = Path(".divsweep/ray_results")
# With remote storage the tracker's journal is written here (it is appended and fsynced, which
# object storage cannot do) and mirrored to `<sweep folder>/journal/` (orchestrator/storage.py)
LOCAL_JOURNALS = Path(".divsweep/journals")
JOURNAL_DIR = "journal"
OUTCOMES = (Status.FINISHED, Status.FAILED, Status.STOPPED)  # as the summary line counts


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
    # trials by how they ended (OUTCOMES), counted when the sweep ends
    outcome: dict[str, int] = field(default_factory=dict)

    @property
    def spec(self) -> SweepSpec:
        return parse_spec(yaml.safe_load(self.spec_yaml))

    def save(self) -> None:
        state = json.dumps(asdict(self), indent=2)
        storage.write_text(storage.join(self.directory, STATE_FILE), state)


def run(
    spec: SweepSpec | str | Path,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
    report_dir: str | Path | None = None,
) -> Sweep:
    """Run a sweep (a spec file or a loaded `SweepSpec`) on local Ray or the cluster at
    `address`; every trial is an MLflow run under the sweep's parent run. With `report_dir`,
    the sweep's report there (and on its parent run) is refreshed as trials end and rewritten
    when the sweep ends (orchestrator/refresh.py). Returns the sweep; after Ctrl-C
    `.interrupted` is set, and `resume(name)` goes on from there."""
    from divsweep.orchestrator.search import make_searcher

    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    uri = tracking.absolute_uri(tracking_uri or spec.tracking.uri)
    # unreachable services fail in seconds, before any data is built or run is opened
    tracking.check_reachable(uri, create=True)
    check_address(address)
    # every grid point's dataset once, before any trial: workers then only attach (or build
    # on a node that lacks the file, or a point a search adds), and a data problem fails the
    # sweep before Ray starts
    build_sweep_data(spec, progress)

    # Ray, and every node's view of the storage, before the parent run exists: a sweep that
    # cannot start leaves no RUNNING run behind
    connect(address)
    storage.preflight(spec.storage_path)
    mlf = tracking.client(uri)
    exp_id = tracking.experiment_id(mlf, spec.experiment)
    planned = make_searcher(spec).planned or len(spec.grid())
    parent = tracking.start_parent(mlf, exp_id, spec.name, spec.to_yaml(), planned)
    directory = storage.join(spec.storage_path, f"{spec.name}-{parent[:8]}")
    sweep = Sweep(
        name=spec.name,
        experiment=spec.experiment,
        experiment_id=exp_id,
        parent_run_id=parent,
        tracking_uri=uri,
        directory=directory,
        spec_yaml=spec.to_yaml(),
    )
    with _failing(mlf, sweep):
        tracking.retrying(mlf.set_tag, parent, "divsweep.sweep_dir", directory)
        selection = tracking.metric_tag(spec.selection.metric, spec.selection.mode)
        tracking.retrying(mlf.set_tag, parent, tracking.SELECTION, selection)
        headline = tracking.metric_tag(spec.headline_metric.metric, spec.headline_metric.mode)
        tracking.retrying(mlf.set_tag, parent, tracking.HEADLINE, headline)
        study = tracking.USER_STUDY if spec.user_study else tracking.BUILTIN_STUDY
        tracking.retrying(mlf.set_tag, parent, tracking.STUDY, study)
        tracking.retrying(mlf.set_tag, parent, tracking.SEARCH, spec.search.kind)
        cost.log_prices(mlf, parent, spec.cost)
        sweep.save()
        with _tracker(sweep, new_sweep=True) as sweep_tracker:
            return _fit(sweep, spec, sweep_tracker, progress, report_dir, restore=False)


def build_sweep_data(spec: SweepSpec, progress: bool) -> None:
    """Every grid point's datasets, once: the built-in study's generated sets, or a user
    study's (drawn from its grouped table, or generated)."""
    from divsweep.datasets import build_all
    from divsweep.trainer.user_trial import build_data

    if not spec.user_study:
        build_all(spec.data_configs(), cache_dir=spec.cache_dir, progress=progress)
        return
    for data, eval_cfg in spec.data_configs():
        build_data(data, eval_cfg, cache_dir=spec.cache_dir)


def resume(
    experiment: str,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    progress: bool = True,
    report_dir: str | Path | None = None,
) -> Sweep:
    """Go on with an interrupted sweep: finished trials are kept, unfinished ones continue
    from their last checkpoint, each in its own MLflow run (`report_dir`: as for `run`)."""
    check_address(address)
    sweep = locate(experiment, tracking_uri=tracking_uri, storage_path=storage_path)
    spec = sweep.spec
    tracking.check_reachable(sweep.tracking_uri)
    connect(address)
    storage.preflight(sweep.directory)
    mlf = tracking.client(sweep.tracking_uri)
    tracking.set_status(mlf, sweep.parent_run_id, Status.RUNNING)
    sweep.interrupted = False
    # the new tracker first sends what the old driver's had journaled and not yet sent
    with _failing(mlf, sweep), _tracker(sweep, new_sweep=False) as sweep_tracker:
        return _fit(sweep, spec, sweep_tracker, progress, report_dir, restore=True)


def _fit(
    sweep: Sweep,
    spec: SweepSpec,
    sweep_tracker: Tracker,
    progress: bool,
    report_dir: str | Path | None,
    restore: bool,
):
    """Run the sweep's Tuner (a new one, or the saved one restored) to its end or a Ctrl-C."""
    from divsweep.orchestrator.search import make_searcher
    from divsweep.orchestrator.tuner import (
        CostCallback,
        Driver,
        ProgressCallback,
        ProgressDisplay,
        RefreshCallback,
        SpecProblemStop,
        TrackingCallback,
        attach,
        make_tuner,
        restore_tuner,
    )

    mlf = tracking.client(sweep.tracking_uri)
    folder = sweep.directory  # a path or an s3:// / gs:// URI
    planned = make_searcher(spec).planned
    display = ProgressDisplay(planned, sweep.name, spec.selection.metric) if progress else None
    # the callbacks carry the sweep's key only (Tune pickles them with the experiment); they
    # find this driver's tracker and display under that key when Tune sets them up
    if restore:
        tuner = restore_tuner(spec, storage.join(folder, TUNE_DIR))
    else:
        early_stopping = spec.scheduler.kind != "fifo"
        callbacks = [
            TrackingCallback(sweep.directory, sweep.name, early_stopping),
            CostCallback(sweep.directory, spec.cost),
            # after the tracking and cost callbacks: a refresh holds what they recorded
            RefreshCallback(sweep.directory),
            ProgressCallback(sweep.directory),
        ]
        context = {
            "cache_dir": None if spec.cache_dir is None else str(spec.cache_dir),
            # a user's module is checked for it at its first report
            "selection_metric": spec.selection.metric,
        }
        stopper = SpecProblemStop(sweep.directory)
        tuner = make_tuner(spec, context, folder, TUNE_DIR, callbacks, stopper)
    refresher = (
        None
        if report_dir is None
        else Refresher(sweep.experiment, sweep.tracking_uri, Path(report_dir), sweep_tracker)
    )
    driver = Driver(sweep_tracker, display, refresher)
    try:
        with attach(sweep.directory, driver), display or contextlib.nullcontext():
            grid = tuner.fit()
    finally:
        if refresher is not None:
            refresher.close()
    # what the trials logged is in MLflow before the sweep says it ended
    _drain(sweep_tracker, sweep)
    if driver.problem is not None:  # the spec's mistake, found by a trial: bad input
        # (_failing marks the parent run FAILED)
        raise UserError(f"sweep {sweep.name} stopped: {driver.problem}")
    tracking.retrying(mlf.set_tag, sweep.parent_run_id, tracking.N_TRIALS, str(len(grid)))
    cost.log_totals(mlf, sweep.experiment_id, sweep.parent_run_id)
    if refresher is not None:
        refresher.log(mlf, sweep.parent_run_id)
    if _cut_off(grid, spec, storage.join(folder, TUNE_DIR)):
        return _interrupted(mlf, sweep)
    sweep = _conclude(mlf, sweep)
    if report_dir is not None:  # the final report replaces the last refresh
        from divsweep.orchestrator.report import write_report

        write_report(sweep.experiment, sweep.tracking_uri, Path(report_dir))
    return sweep


def _cut_off(grid, spec: SweepSpec, experiment_dir: str) -> bool:
    # Tune returns normally on Ctrl-C (after saving its state), with trials left unfinished
    # or not even suggested yet: the saved searcher says whether any are left
    from divsweep.orchestrator.search import finished

    ended = grid.num_terminated + grid.num_errors
    if ended < len(grid):
        return True
    # the searcher's state files, local (Tune reads only local ones) when the storage is remote
    with storage.local_view(str(experiment_dir), "searcher-state") as local:
        return not finished(spec, local)


def _interrupted(mlf, sweep: Sweep) -> Sweep:
    sweep.interrupted = True
    sweep.save()
    tracking.set_status(mlf, sweep.parent_run_id, Status.STOPPED)
    return sweep


def _conclude(mlf, sweep: Sweep) -> Sweep:
    """End the sweep as its trials ended: its parent run is FAILED if any trial failed (the
    CLI then exits 1), else FINISHED; `sweep.outcome` counts the trials by how they ended."""
    runs = tracking.trial_runs(mlf, sweep.experiment_id, sweep.parent_run_id)
    ended = collections.Counter(r.data.tags.get(tracking.STATUS) for r in runs)
    sweep.outcome = {status: ended[status] for status in OUTCOMES}
    sweep.save()
    tracking.set_status(
        mlf, sweep.parent_run_id, Status.FAILED if ended[Status.FAILED] else Status.FINISHED
    )
    return sweep


@contextlib.contextmanager
def _failing(mlf, sweep: Sweep) -> Iterator[None]:
    """A driver that dies of an error leaves its parent run FAILED, not RUNNING forever.
    (Ctrl-C is not an error here: Tune returns from it normally, and the sweep is stopped.)"""
    try:
        yield
    except Exception:
        # an MLflow that is away stays unmarked (its records wait in the journal for resume)
        with contextlib.suppress(Exception):
            tracking.check_reachable(sweep.tracking_uri)
            tracking.set_status(mlf, sweep.parent_run_id, Status.FAILED)
        raise


def _journal_dir(sweep: Sweep) -> Path:
    """Where this driver keeps the sweep's journal: in its folder, or (remote storage) in
    LOCAL_JOURNALS, mirrored to the folder."""
    if not storage.is_remote(sweep.directory):
        return Path(sweep.directory)
    return (LOCAL_JOURNALS / storage.name(sweep.directory)).resolve()


@contextlib.contextmanager
def _tracker(sweep: Sweep, new_sweep: bool) -> Iterator[Tracker]:
    """The sweep's tracker while this driver runs it (a resumed sweep's first sends what the
    last driver had journaled and not sent)."""
    local, mirrored = _journal_dir(sweep), storage.join(sweep.directory, JOURNAL_DIR)
    remote = storage.is_remote(sweep.directory)
    if remote and not new_sweep:  # another machine or folder may have run it last
        storage.fetch_mirror(mirrored, local, JOURNAL_FILE)
    sweep_tracker = Tracker(
        sweep.tracking_uri,
        sweep.experiment_id,
        sweep.parent_run_id,
        local / JOURNAL_FILE,
        new_sweep,
    )
    mirror = storage.Mirror(local, mirrored) if remote else None
    try:
        yield sweep_tracker
    finally:
        sweep_tracker.close()
        if mirror is not None:
            mirror.close()


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
    from ray.exceptions import AuthenticationError

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
    except (ConnectionError, AuthenticationError) as err:
        raise UserError(_refused(address, err)) from None


def _refused(address: str, err: Exception) -> str:
    """ray.init's refusal, said with what to do: a token-auth cluster refuses a driver
    whose token is missing or wrong (Ray reports that only in its C++ log lines)."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if os.environ.get("RAY_AUTH_MODE") != "token":
        why = "RAY_AUTH_MODE is not 'token' in this shell"
    elif not (os.environ.get("RAY_AUTH_TOKEN") or path.is_file()):
        why = "no token is set in this shell"
    else:
        why = "the token set in this shell was refused"
    return (
        f"cannot join the Ray cluster at {address!r}: {err}. If the cluster uses token auth, "
        f"{why}: set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or a file "
        "named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token); `ray get-auth-token` on the head "
        "prints it"
    )


def locate(
    experiment: str,
    *,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
) -> Sweep:
    """Find the newest sweep of `experiment`: in the storage folder, else via its MLflow
    parent run (spec artifact + `divsweep.sweep_dir` tag)."""
    root = storage.normalize(storage_path or DEFAULT_STORAGE)
    for state in storage.find(root, STATE_FILE):
        sweep = Sweep(**json.loads(storage.read_text(state)))
        if sweep.experiment == experiment and (
            tracking_uri is None or sweep.tracking_uri == tracking.absolute_uri(tracking_uri)
        ):
            return sweep
    return _locate_in_mlflow(experiment, tracking_uri or "sqlite:///mlflow.db", root)


def _locate_in_mlflow(experiment: str, uri: str, root: str) -> Sweep:
    import mlflow.artifacts

    uri = tracking.absolute_uri(uri)
    try:
        tracking.check_reachable(uri)
    except UserError as err:
        raise UserError(f"no sweep found for experiment {experiment!r} in {root}; {err}") from None
    mlf = tracking.client(uri)
    exp_id = tracking.experiment_id(mlf, experiment, create=False)
    parent = tracking.find_parent(mlf, exp_id)
    if parent is None:
        raise UserError(f"no sweep found for experiment {experiment!r} in {root} or {uri}")
    directory = parent.data.tags.get("divsweep.sweep_dir", "")
    state = storage.join(directory, STATE_FILE)
    if not directory or not storage.exists(state):
        raise UserError(
            f"sweep {experiment!r} is in MLflow but its folder {directory} is not reachable "
            "from here; resume it where it ran, or pass --storage-path"
        )
    sweep = Sweep(**json.loads(storage.read_text(state)))
    local = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path=tracking.SPEC_ARTIFACT, tracking_uri=uri
    )
    sweep.spec_yaml = Path(local).read_text()
    return sweep
