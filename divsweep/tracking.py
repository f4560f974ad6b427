"""MLflow layout of a sweep: a parent run per sweep, a child run per trial (docs/architecture.md);
`divsweep train` logs its one trial the same way, without a parent.

Plain functions over `MlflowClient` (no fluent API): a sweep's tracker writes the runs of
many trials at once from one driver thread, and the fluent API's process-global "active run"
would mix them up.

A tracking server may be away for a while (restart, network): every call here retries with
backoff for up to $DIVSWEEP_MLFLOW_RETRY_S seconds (default 600). A sweep's records go through
its tracker's journal (orchestrator/tracker.py), so trials train on during an outage and
nothing is lost even when it outlasts the retries.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from divsweep.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

ROLE, SWEEP, STATUS = "divsweep.role", "divsweep.sweep", "divsweep.status"


class Status(str, enum.Enum):
    """A trial's or a sweep's state, as its run's `divsweep.status` tag spells it; the one
    place the values are written (as Optuna's TrialState), read by the tracker, `status`, the
    CLI and the report alike. A str: tags, JSON and tables hold the plain value."""

    RUNNING = "running"
    FINISHED = "finished"  # trained to its end
    STOPPED = "stopped"  # stopped early (a scheduler, an interrupted sweep)
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


ENDED = (Status.FINISHED, Status.STOPPED, Status.FAILED)
KEY = "divsweep.trial_key"
# on a trial run: the source of its latest preemption notice (trainer/preemption.py: drain,
# sigterm), and as a metric at each notice's step, how many notices it has stopped at so far
PREEMPTED, PREEMPTIONS = "divsweep.preempted", "divsweep.preemptions"
N_TRIALS = "divsweep.n_trials"  # on the parent run: trials planned, then trials run
# on the parent run: the metric (and mode) the sweep's scheduler and searches optimised, and
# its search kind (grid, random, optuna, adaptive)
SELECTION, SEARCH = "divsweep.selection", "divsweep.search"
# on the parent run: the metric (and mode) its report puts first, as the study declares it
HEADLINE = "divsweep.headline"


def metric_tag(metric: str, mode: str) -> str:
    """The value of a SELECTION or HEADLINE tag: `metric (mode)`."""
    return f"{metric} ({mode})"


def read_metric_tag(text: str) -> tuple[str, str]:
    """(metric, mode) of a SELECTION or HEADLINE tag's value."""
    metric, _, mode = text.rpartition(" (")
    return metric, mode.rstrip(")")


# on the parent run: whose trials the sweep ran, the built-in study's or the user's own
# LightningModule's (USER_STUDY); a parent without the tag predates user trials: built-in
STUDY, BUILTIN_STUDY, USER_STUDY = "divsweep.study", "builtin", "lightning"
PARENT = "mlflow.parentRunId"
SPEC_ARTIFACT = "spec.yaml"  # on the parent run: the resolved sweep spec, axes included
# MLflow 3's UI opens an experiment on the view its kind names; without the tag it guesses,
# and an experiment of runs without traces opens on the (empty) GenAI overview. Key and value
# as the UI's bundle spells them (mlflow/server/js/build: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT).
EXPERIMENT_KIND, CUSTOM_MODEL = "mlflow.experimentKind", "custom_model_development"
# A trial's datasets as MLflow inputs: cache-file kind (datasets/build.py) -> the input's
# context (MLflow's `mlflow.data.context` tag); a digest is at most 36 characters in MLflow.
DATASET_CONTEXTS = {"train": "training", "eval_seen": "eval_seen", "eval_unseen": "eval_unseen",
                    "eval_unseen_val": "eval_unseen_val"}  # fmt: skip
DATASET_CONTEXT, DIGEST_CHARS = "mlflow.data.context", 36
# A trial's system metrics (workers/sysmetrics.py): MLflow's UI charts "system/..." metrics
# in a run's System metrics tab. The process figures are the trial's own; the GPU ones, named
# as MLflow's own monitor names them, are the whole device's (shared by packed trials), except
# gpu_<i>_process_memory_megabytes, the trial process's own memory on that GPU.
SYSTEM_PREFIX = "system/"
PROCESS_CPU = SYSTEM_PREFIX + "process_cpu_utilization_percentage"  # of one core: can pass 100
PROCESS_RSS = SYSTEM_PREFIX + "process_memory_rss_megabytes"
GPU_FIGURES = (
    "utilization_percentage",
    "memory_usage_megabytes",
    "power_usage_watts",
    "process_memory_megabytes",
)
# What a trial cost (orchestrator/cost.py): the seconds it held the resources Ray granted it and
# those resources times that time, summed over its attempts; money where the spec prices them.
# The parent run carries the sweep's totals under the same names, and the prices as params.
HELD_S, GPU_HOURS, CPU_HOURS, MONEY = (
    "cost/held_s", "cost/gpu_hours", "cost/cpu_hours", "cost/money"
)  # fmt: skip
PRICE_PARAMS = ("cost.gpu_hour", "cost.cpu_hour", "cost.currency")
# On the parent run: the latest report written for the sweep (a path on the machine that wrote
# it; also the run's `report/` artifacts) and what it holds ("partial: 3 of 8 trials", "final")
REPORT, REPORT_STATE = "divsweep.report", "divsweep.report_state"
# On the parent run, when the sweep ends: how often its report was refreshed while it ran, the
# CPU seconds those refreshes took, and the driver process's own over the same time
# (orchestrator/refresh.py)
REFRESHES, REFRESH_CPU_S = "report/refreshes", "report/refresh_cpu_s"
# renders the sweep's end stopped before they wrote a report (their CPU is in REFRESH_CPU_S)
REFRESHES_CUT = "report/refreshes_cut"
DRIVER_CPU_S = "report/driver_cpu_s"
# MLflow takes at most 1,000 metrics per log_batch
MAX_BATCH_METRICS = 1000
# divsweep.status -> MLflow's own run status, so `mlflow ui` agrees with `divsweep status`
RUN_STATUS = {Status.RUNNING: "RUNNING", Status.FINISHED: "FINISHED", Status.FAILED: "FAILED",
              Status.STOPPED: "KILLED"}  # fmt: skip
# MLflow's own HTTP retries (7, backoff factor 2) would stall a call for minutes; a couple of
# quick ones, then divsweep's retry loop (which the metric buffer can step out of) take over.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
MAX_BACKOFF_S = 8.0


def gpu_metric(gpu_id: str, figure: str) -> str:
    """`figure` (one of GPU_FIGURES) of the GPU Ray calls `gpu_id`."""
    return f"{SYSTEM_PREFIX}gpu_{gpu_id}_{figure}"


def retry_s() -> float:
    return float(os.environ.get("DIVSWEEP_MLFLOW_RETRY_S", "600"))


def unreachable(err: BaseException) -> bool:
    """The server did not answer (refused, reset, timed out, 5xx): worth retrying. A 4xx or a
    store error is an answer, and retrying it would only repeat it."""
    from mlflow.exceptions import MlflowException

    text = str(err)
    return (
        isinstance(err, MlflowException)
        and text.startswith("API request to")
        and ("failed with exception" in text or "error code 5" in text)
    )


def retrying(call: Callable, *args, deadline_s: float | None = None, **kwargs):
    """`call(*args, **kwargs)`, retried with exponential backoff while the server is away."""
    deadline = time.monotonic() + (retry_s() if deadline_s is None else deadline_s)
    delay = 0.5
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as err:
            if not unreachable(err) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, MAX_BACKOFF_S)


def check_reachable(uri: str, create: bool = False) -> None:
    """Fail fast, with one line, when the tracking store is not there: an HTTP server that does
    not answer (rather than minutes of retries), or, unless `create` (only `run` may make one),
    a SQLite file that does not exist, which reading it would create."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5).close()
        except urllib.error.HTTPError:
            pass  # it answered (e.g. 401 behind auth): reachable
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"cannot reach the MLflow tracking server at {uri}: {reason}") from None
    elif (
        not create
        and uri.startswith("sqlite:///")
        and not Path(uri.removeprefix("sqlite:///")).is_file()
    ):
        raise UserError(f"no MLflow store at {uri} (file does not exist)")


def absolute_uri(uri: str) -> str:
    """Make a SQLite or file store URI absolute: workers run in other directories."""
    for scheme in ("sqlite:///", "file://"):
        if uri.startswith(scheme):
            path = uri.removeprefix(scheme)
            if scheme == "sqlite:///" and path.startswith("/"):
                return uri
            return scheme + str(Path(path).expanduser().resolve())
    if "://" not in uri:  # a bare directory, as MLflow accepts
        return str(Path(uri).expanduser().resolve())
    return uri


@functools.lru_cache(maxsize=8)
def client(uri: str) -> MlflowClient:
    """One client per URI per process: drivers and reused Ray workers keep theirs."""
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlf: MlflowClient, name: str, create: bool = True) -> str:
    """The experiment's id; `create`: made if absent, and marked as one of model training runs
    (an existing one without a kind too: made by an older divsweep or by hand)."""
    exp = retrying(mlf.get_experiment_by_name, name)
    if exp is None and not create:
        raise UserError(f"no MLflow experiment named {name!r} at {mlf.tracking_uri}")
    if exp is None:
        return retrying(mlf.create_experiment, name, tags={EXPERIMENT_KIND: CUSTOM_MODEL})
    if create and EXPERIMENT_KIND not in exp.tags:
        retrying(mlf.set_experiment_tag, exp.experiment_id, EXPERIMENT_KIND, CUSTOM_MODEL)
    return exp.experiment_id


def start_parent(mlf: MlflowClient, exp_id: str, sweep: str, spec_yaml: str, n_trials: int) -> str:
    run = retrying(
        mlf.create_run,
        exp_id,
        run_name=sweep,
        tags={ROLE: "sweep", SWEEP: sweep, N_TRIALS: str(n_trials)},
    )
    retrying(mlf.log_text, run.info.run_id, spec_yaml, SPEC_ARTIFACT)
    return run.info.run_id


def find_parent(mlf: MlflowClient, exp_id: str) -> Run | None:
    """The newest sweep run of the experiment."""
    runs = retrying(
        mlf.search_runs,
        [exp_id],
        filter_string=f"tags.`{ROLE}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def trial_runs(mlf: MlflowClient, exp_id: str, parent_id: str) -> list[Run]:
    return retrying(
        mlf.search_runs,
        [exp_id],
        filter_string=f"tags.`{PARENT}` = '{parent_id}' and tags.`{ROLE}` = 'trial'",
        max_results=50_000,
    )


def find_trial(mlf: MlflowClient, exp_id: str, parent_id: str, key: str) -> Run | None:
    runs = retrying(
        mlf.search_runs,
        [exp_id],
        filter_string=f"tags.`{PARENT}` = '{parent_id}' and tags.`{KEY}` = '{key}'",
        order_by=["attributes.start_time ASC"],
    )
    return runs[0] if runs else None


def create_trial_run(
    mlf: MlflowClient,
    exp_id: str,
    key: str,
    name: str,
    params: dict[str, str],
    tags: dict[str, str],
    start_ms: int | None = None,
) -> str:
    """A new, running trial run holding the trial's resolved config as params; its id.
    `start_ms`: when the trial started (default now), as the run's start time.

    A create whose reply was lost may still have landed: each retry first looks for a run of
    this key started since the first attempt (by the client's clock, passed as start_time),
    so a flaky server never leaves two runs for one trial.
    """
    from mlflow.entities import Param

    since = int(time.time() * 1000) if start_ms is None else start_ms
    attempts = 0

    def create_once():
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            query = f"tags.`{KEY}` = '{key}' and attributes.start_time >= {since}"
            if PARENT in tags:
                query += f" and tags.`{PARENT}` = '{tags[PARENT]}'"
            landed = mlf.search_runs([exp_id], filter_string=query, max_results=1)
            if landed:
                return landed[0]
        tags_now = {ROLE: "trial", KEY: key, **tags, STATUS: "running"}
        return mlf.create_run(exp_id, start_time=since, run_name=name, tags=tags_now)

    run = retrying(create_once)
    rows = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(rows), 100):  # MLflow takes at most 100 params per batch
        retrying(mlf.log_batch, run.info.run_id, params=rows[start : start + 100])
    return run.info.run_id


def reopen_trial_run(mlf: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """A retried or resumed trial's run: running again, with where it runs now."""
    retrying(mlf.update_run, run_id, status="RUNNING")
    for name, value in {**tags, STATUS: "running"}.items():
        retrying(mlf.set_tag, run_id, name, value)


def log_metrics(
    mlf: MlflowClient,
    run_id: str,
    metrics: dict[str, float],
    step: int,
    last: bool = False,
    timestamp_ms: int | None = None,
    tags: dict[str, str] | None = None,
    system: list | None = None,
    start_ms: int = 0,
) -> None:
    """Log one evaluation (and `tags`, and `system` samples: see `system_metrics`); `last`
    also closes the run as finished, ending at the evaluation's time (one write fewer than
    logging and then calling set_status, which counts with hundreds of short trials). No
    retries of its own: a resend (same timestamps) is deduplicated by MLflow."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    rows = system_metrics(system or [], start_ms)
    rows += [Metric(k, float(v), now, step) for k, v in metrics.items()]
    tags = {**(tags or {}), **({STATUS: "finished"} if last else {})}
    *head, tail = range(0, len(rows), MAX_BATCH_METRICS) or [0]
    for start in head:
        mlf.log_batch(run_id, metrics=rows[start : start + MAX_BATCH_METRICS])
    mlf.log_batch(run_id, metrics=rows[tail:], tags=[RunTag(k, v) for k, v in tags.items()])
    if last:
        mlf.set_terminated(run_id, RUN_STATUS[Status.FINISHED], end_time=now)


def system_metrics(samples: list, start_ms: int) -> list:
    """`samples` ([time_ms, {name: value}], workers/sysmetrics.py) as MLflow metrics at their
    own times. The step is whole seconds since the run started (`start_ms`): MLflow's own
    monitor counts samples instead, which would restart at 0 with each retry of a trial;
    seconds stay in order, and the same for a resent record, across retries and resumes."""
    from mlflow.entities import Metric

    return [
        Metric(name, float(value), at, max(0, (at - start_ms) // 1000))
        for at, figures in samples
        for name, value in figures.items()
    ]


def log_datasets(mlf: MlflowClient, run_id: str, datasets: list[dict]) -> None:
    """Log datasets described by workers/inputs.py as the run's inputs, each with its context.
    MLflow keeps one dataset per (name, digest) in an experiment and one input per dataset
    and run, so logging the same ones again adds nothing."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types import Schema

    inputs = []
    for d in datasets:
        with warnings.catch_warnings():
            # MLflow registers its local-file source for both "" and "file" URIs, then warns
            # that a file URI matches both (the same class)
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(d["source"])
        meta = MetaDataset(
            source,
            name=d["name"],
            digest=d["digest"],
            schema=Schema.from_json(json.dumps(d["schema"])),
        ).to_dict()
        dataset = Dataset(**meta, profile=json.dumps(d["profile"]))
        inputs.append(DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT, d["context"])]))
    retrying(mlf.log_inputs, run_id, datasets=inputs)


def set_status(mlf: MlflowClient, run_id: str, status: str, at_ms: int | None = None) -> None:
    """Set a run's divsweep and MLflow status; an end status ends it at `at_ms` (default now)."""
    retrying(mlf.set_tag, run_id, STATUS, str(status))
    if status == Status.RUNNING:
        retrying(mlf.update_run, run_id, status="RUNNING")
    else:
        retrying(mlf.set_terminated, run_id, RUN_STATUS[status], end_time=at_ms)
