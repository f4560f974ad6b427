"""MLflow → one tidy table of trials (and metric histories on demand).

MLflow is the system of record: this module never looks at Ray's result folders, so a report
can be built for a sweep run anywhere that logged to the same tracking server.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from divsweep import tracking
from divsweep.datasets.sampling import allocation
from divsweep.errors import UserError
from divsweep.orchestrator.cost import COST_COLUMNS
from divsweep.tracking import ENDED, Status, retrying
from divsweep.trainer import predictions, study

ROLE_TAG, SWEEP_TAG, STATUS_TAG = tracking.ROLE, tracking.SWEEP, tracking.STATUS
N_TRIALS_TAG, TRIAL_KEY_TAG = tracking.N_TRIALS, tracking.KEY

STATUSES = (Status.FINISHED, Status.RUNNING, Status.STOPPED, Status.FAILED)
# Early-stopped and running trials did not train to the end; averaging them in would mix budgets.
AGGREGATED_STATUSES = (Status.FINISHED,)
# Settings that set how much training a trial gets (built-in `train.*`, a user's `trainer.*`).
# Among equally common values the reference slice holds the largest, the trials that trained
# longest; the frontier's compute arms (threshold.compute_arms) keep every value.
COMPUTE_SETTINGS = ("train.max_steps", "train.epochs", "train.batch_size", "trainer.max_steps",
                    "trainer.max_epochs")  # fmt: skip
# A run whose worker died before tagging it still has MLflow's own lifecycle status.
_MLFLOW_STATUS = {"FINISHED": Status.FINISHED, "RUNNING": Status.RUNNING,
                  "SCHEDULED": Status.RUNNING, "FAILED": Status.FAILED,
                  "KILLED": Status.STOPPED}  # fmt: skip

# Resolved axes: tidy column name → flattened param name (docs/architecture.md).
AXIS_PARAMS = {
    "n_instructions": "data.n_instructions",
    "examples_per_instruction": "data.examples_per_instruction",
    "total_examples": "data.total_examples",
    "distribution": "data.distribution",
    "alpha": "data.alpha",
    "p_pattern_present": "data.task.p_pattern_present",
    "seed": "seed",
}
# Swept settings these columns already stand for (a budget axis is `total_examples`).
BUILT_IN_AXES = {*AXIS_PARAMS.values(), "data.budget"}
# the built-in study's metrics (trainer/study.py); a user's module adds whatever it logs
ACCURACY_METRICS, OTHER_METRICS = study.ACCURACY, study.PROGRESS
# The best-so-far value needs the whole history; only the two headline metrics pay for it.
BEST_METRICS = (study.HEADLINE, study.SEEN)


def column(metric: str) -> str:
    """Tidy column name of a metric: `unseen/exact_match` → `unseen_exact_match` (a dot too:
    dotted columns are swept settings)."""
    return metric.replace("/", "_").replace(".", "_")


def swept_settings(table: pd.DataFrame) -> list[str]:
    """The columns of settings a sweep varied beyond the built-in axes (`data.task.train_k`,
    `model.d_model`, ...): named by their dotted path, which no other column has; values are
    the trials' params as logged."""
    return [c for c in table.columns if "." in c]


def setting_order(value: str) -> tuple:
    """Sort key of a logged setting value: numbers and lists in their natural order
    (`[3, 4]` before `[3, 12]`), other text after them."""
    parsed = yaml.safe_load(value) if isinstance(value, str) else value
    comparable = isinstance(parsed, (int, float, list)) and not isinstance(parsed, bool)
    return (0, parsed, "") if comparable else (1, [], str(value))


@dataclass(frozen=True)
class Sweep:
    name: str
    parent_run_id: str
    n_trials: int | None  # grid size from the parent's tag; None when the tag is missing
    trials: pd.DataFrame  # one row per trial (latest MLflow run per trial key)
    selection: str | None = None  # what the sweep's scheduler and searches optimised
    search: str | None = None  # its search kind; None for sweeps run before it was tagged
    headline: str | None = None  # "metric (mode)" the report puts first; None before tagged
    axes: tuple[str, ...] = ()  # the spec's axes, by dotted path
    metrics: tuple[str, ...] = ()  # every metric a trial logged (system metrics aside)
    study: str = tracking.BUILTIN_STUDY  # whose trials: tracking.BUILTIN_STUDY or USER_STUDY

    @property
    def n_done(self) -> int:
        return int(self.trials["status"].isin(ENDED).sum())

    @property
    def partial(self) -> bool:
        running = bool((self.trials["status"] == Status.RUNNING).any())
        return running or (self.n_trials is not None and self.n_done < self.n_trials)


def _number(text: str | None) -> float:
    if text is None or text in ("", "None", "null"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = retrying(
            client.search_runs, [experiment_id], filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _effective(row: dict, data_seed: float) -> float:
    """Instructions with at least one training example: all of a uniform set's; a power-law
    set's from its allocation (a function of the data config alone)."""
    if row["distribution"] != "powerlaw":
        return row["n_instructions"]
    values = (row["n_instructions"], row["total_examples"], row["alpha"], data_seed)
    if any(math.isnan(v) for v in values):
        return math.nan
    n, total, alpha, seed = values
    return float((allocation(int(n), int(total), "powerlaw", alpha, int(seed)) > 0).sum())


def _axes(client: MlflowClient, parent: Run) -> list[str]:
    """The axes of the parent's spec; none for a parent without its spec (logged by hand, or
    by a tool other than divsweep)."""
    listed = retrying(client.list_artifacts, parent.info.run_id)
    if tracking.SPEC_ARTIFACT not in {a.path for a in listed}:
        return []
    text = retrying(client.download_artifacts, parent.info.run_id, tracking.SPEC_ARTIFACT)
    with open(text, encoding="utf-8") as spec:
        return list((yaml.safe_load(spec) or {}).get("axes") or {})


def _settings(axes: list[str]) -> list[str]:
    """The axes beyond the built-in ones, which the table keeps by their dotted path."""
    return [path for path in axes if path not in BUILT_IN_AXES and path != "seed"]


def axis_column(path: str) -> str:
    """The trials table's column of an axis (`data.budget` is `total_examples`)."""
    if path == "data.budget":
        return "total_examples"
    return next((col for col, param in AXIS_PARAMS.items() if param == path), path)


def _trial_row(run: Run, settings: list[str], logged: tuple[str, ...]) -> dict:
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    status = str(tags.get(STATUS_TAG) or _MLFLOW_STATUS.get(run.info.status, Status.RUNNING))
    row: dict = {
        "run_id": run.info.run_id,
        "trial_key": tags.get(TRIAL_KEY_TAG, run.info.run_id),
        "status": status,
        "node": tags.get("divsweep.node", ""),
        "accelerator": tags.get("divsweep.accelerator", ""),
        "start_time": run.info.start_time or 0,
    }
    for col, param in AXIS_PARAMS.items():
        row[col] = params.get(param) if col == "distribution" else _number(params.get(param))
    row["distribution"] = row["distribution"] or "uniform"
    row.update({path: params.get(path) for path in settings})
    if math.isnan(row["total_examples"]):
        row["total_examples"] = row["n_instructions"] * row["examples_per_instruction"]
    row["data_seed"] = _number(params.get("data.seed"))  # fixes a power law's allocation
    row["effective_instructions"] = _effective(row, row["data_seed"])
    if math.isnan(row["examples_per_instruction"]):
        row["examples_per_instruction"] = row["total_examples"] / row["n_instructions"]
    for metric in (*ACCURACY_METRICS, *OTHER_METRICS, *logged):
        row[column(metric)] = metrics.get(metric, math.nan)
    # what the trial held, as the driver measured it (orchestrator/cost.py): a packed trial's
    # GPU-hours are its share's
    for col, metric in COST_COLUMNS.items():
        row[col] = metrics.get(metric, math.nan)
    # checkpoints on a preemption notice (trainer/preemption.py): not failures, but said
    row["preemptions"] = metrics.get(tracking.PREEMPTIONS, 0.0)
    return row


def _best(client: MlflowClient, run_id: str) -> dict[str, float]:
    out = {}
    for metric in BEST_METRICS:
        values = [m.value for m in retrying(client.get_metric_history, run_id, metric)]
        out[f"best_{column(metric)}"] = max(values) if values else math.nan
    return out


def _latest_per_trial(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial key: a resumed trial that got a second run is counted once."""
    rank = {Status.FINISHED: 3, Status.STOPPED: 2, Status.FAILED: 1, Status.RUNNING: 0}
    order = trials.assign(_rank=trials["status"].map(rank).fillna(0))
    order = order.sort_values(["_rank", "start_time"], ascending=[False, False])
    return order.drop_duplicates("trial_key").drop(columns="_rank").reset_index(drop=True)


def collect(experiment: str, tracking_uri: str) -> Sweep:
    """Read a sweep (parent run + trial runs) from MLflow into a tidy table."""
    client = tracking.client(tracking_uri)
    exp = retrying(client.get_experiment_by_name, experiment)
    if exp is None:
        raise UserError(f"experiment {experiment!r} not found at tracking URI {tracking_uri}")
    parents = _search(client, exp.experiment_id, f"tags.`{ROLE_TAG}` = 'sweep'")
    if not parents:
        raise UserError(
            f"experiment {experiment!r} has no sweep parent run (tag {ROLE_TAG}=sweep); "
            "is it a divsweep sweep?"
        )
    parent = max(parents, key=lambda r: r.info.start_time or 0)
    n_trials = _number(parent.data.tags.get(N_TRIALS_TAG))
    # Children of the newest parent, as `divsweep status` counts them: a sweep run again under
    # the same name starts a new parent and must not mix in the old one's trials.
    runs = _search(
        client,
        exp.experiment_id,
        f"tags.`{ROLE_TAG}` = 'trial' and tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    sweep_name = parent.data.tags.get(SWEEP_TAG, experiment)
    axes = _axes(client, parent)
    settings = _settings(axes)
    known = {*ACCURACY_METRICS, *OTHER_METRICS, tracking.PREEMPTIONS}
    logged = tuple(sorted({m for r in runs for m in r.data.metrics} - known))
    logged = tuple(m for m in logged if not m.startswith(tracking.SYSTEM_PREFIX))
    rows = [_trial_row(r, settings, logged) for r in runs]
    columns = list(_trial_row_columns(settings, logged))
    trials = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    trials = _latest_per_trial(trials)
    # History reads are one request per run and metric: overlap them for remote servers.
    with ThreadPoolExecutor(max_workers=8) as pool:
        best = list(pool.map(lambda rid: _best(client, rid), trials["run_id"]))
    for metric in BEST_METRICS:
        key = f"best_{column(metric)}"
        trials[key] = [b[key] for b in best] if best else pd.Series(dtype=float)
    trials = trials.sort_values(
        ["distribution", "alpha", "p_pattern_present", *settings, "total_examples",
         "n_instructions", "seed"]
    ).reset_index(drop=True)  # fmt: skip
    return Sweep(
        name=sweep_name,
        parent_run_id=parent.info.run_id,
        n_trials=None if math.isnan(n_trials) else int(n_trials),
        trials=trials,
        selection=parent.data.tags.get(tracking.SELECTION),
        search=parent.data.tags.get(tracking.SEARCH),
        headline=parent.data.tags.get(tracking.HEADLINE),
        study=parent.data.tags.get(tracking.STUDY, tracking.BUILTIN_STUDY),
        axes=tuple(axes),
        metrics=tuple(
            m
            for m in {m for r in runs for m in r.data.metrics}
            if not m.startswith(tracking.SYSTEM_PREFIX)
        ),  # fmt: skip
    )


def _trial_row_columns(settings: list[str], logged: tuple[str, ...]) -> Iterable[str]:
    yield from ("run_id", "trial_key", "status", "node", "accelerator", "start_time")
    yield from AXIS_PARAMS
    yield from settings
    yield from ("data_seed", "effective_instructions")
    yield from (column(m) for m in (*ACCURACY_METRICS, *OTHER_METRICS, *logged))
    yield from COST_COLUMNS
    yield "preemptions"


def histories(tracking_uri: str, run_ids: Iterable[str], metrics: Iterable[str]) -> pd.DataFrame:
    """Long table (run_id, metric, step, value) of the given metrics' full histories."""
    client = tracking.client(tracking_uri)
    rows = [
        (run_id, metric, m.step, m.value)
        for run_id in run_ids
        for metric in metrics
        for m in retrying(client.get_metric_history, run_id, metric)
    ]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])


def examples(tracking_uri: str, run_ids: Iterable[str]) -> pd.DataFrame:
    """Per-example predictions (trainer/predictions.py columns + `run_id`) of the trials that
    logged them; trials of sweeps run before they were recorded add no rows."""
    import os
    import tempfile

    import mlflow.artifacts

    # one bar per trial's file would bury the report's own output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = tracking.client(tracking_uri)
    artifact = f"{predictions.ARTIFACT_DIR}/{predictions.FILE}"

    def one(run_id: str, scratch: str) -> pd.DataFrame | None:
        listed = retrying(client.list_artifacts, run_id, predictions.ARTIFACT_DIR)
        if artifact not in {a.path for a in listed}:
            return None
        local = retrying(
            mlflow.artifacts.download_artifacts,
            run_id=run_id,
            artifact_path=artifact,
            dst_path=f"{scratch}/{run_id}",
            tracking_uri=tracking_uri,
        )
        return predictions.read(local).assign(run_id=run_id)

    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max_workers=8) as pool:
        frames = [f for f in pool.map(lambda r: one(r, scratch), run_ids) if f is not None]
    if not frames:
        return pd.DataFrame(columns=[*predictions.SCHEMA.names, "run_id"])
    return pd.concat(frames, ignore_index=True)


def preemption_line(trials: pd.DataFrame) -> str | None:
    """What preemption notices cost the sweep: how many trials checkpointed on one, how often
    (none of them a failure: each went on from its checkpoint's step)."""
    preempted = trials["preemptions"].fillna(0)
    if not preempted.gt(0).any():
        return None
    return (
        f"Preemptions: {int(preempted.gt(0).sum())} trial(s) checkpointed on a preemption "
        f"notice {int(preempted.sum())} time(s) in all and went on from that step elsewhere "
        "(not failures)."
    )
