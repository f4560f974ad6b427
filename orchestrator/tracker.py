"""The sweep's one MLflow writer: a journal in the sweep folder and a thread in the driver.

Trials do not talk to MLflow. Everything MLflow gets is already in the driver, from Tune:
a trial's start (its config: the run's params), each evaluation the trial reports (its
metrics, and where it ran), the datasets it trains and evaluates on, how it ended.
`TrackingCallback` (orchestrator/tuner.py) turns these into records; the tracker appends each
to `tracking-journal.jsonl` and a thread applies them to MLflow in order. An appended record
is in the OS's hands at once (a killed driver loses none); the thread fsyncs the journal every
second, off Tune's loop. So:

- a trial's process imports no MLflow and writes nothing: no MLflow import, SQLite lock or
  write on any trial's critical path (benchmarks/bench_orchestration.py measures the cost);
- while the tracking server is away, trials train on and records wait in the journal; they
  are sent in order once it answers (tests/test_drills_mlflow_outage.py);
- what a killed driver had not sent, the next driver of the sweep (`divsweep resume`) sends
  first: its tracker starts at the journal's applied mark;
- only the driver's machine talks to MLflow: a SQLite store needs no filesystem shared with
  the workers, and MLflow credentials stay with the driver.

Applying a record twice (a crash between applying and marking it) does no harm: an opened run
is found by its trial key and reopened, an evaluation at or below the run's logged step is
skipped, a dataset input the run has is skipped, a status is set again, figures are the same
points again (same step and time), which MLflow keeps once.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divsweep import tracking
from divsweep.orchestrator import storage
from divsweep.tracking import Status

logger = logging.getLogger(__name__)

JOURNAL_FILE = "tracking-journal.jsonl"
# How often the writer fsyncs the journal and moves its applied mark (and when it drains or
# closes): a killed driver loses no record either way (they are in the OS's hands), a
# crashed machine at most this much, and a lagging mark only re-sends harmless repeats.
CHECKPOINT_EVERY_S = 1.0


class Journal:
    """Append-only JSONL of records, and beside it (`.applied`) how many are in MLflow."""

    def __init__(self, path: Path):
        self.path, self.mark = path, path.with_name(path.name + ".applied")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        self._file = open(path, "a")  # noqa: SIM115 - open while the tracker lives

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def unapplied(self) -> list[dict[str, Any]]:
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines[self.applied() :]]

    def applied(self) -> int:
        return int(self.mark.read_text()) if self.mark.is_file() else 0

    def set_applied(self, count: int) -> None:
        # not fsynced: after a crash the mark may lag, and re-applying is harmless
        tmp = self.mark.with_suffix(".tmp")
        tmp.write_text(str(count))
        os.replace(tmp, self.mark)

    def close(self) -> None:
        self._file.close()

    def _drop_torn_tail(self) -> None:
        """A crash mid-append leaves a line without its newline: it goes, before the next
        append joins it. (A driver killed mid-write had not handed the record on.)"""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)


@dataclass
class TrialRun:
    run_id: str
    logged_step: float  # the newest evaluation in MLflow (-1: none)
    status: str
    start_ms: int  # when the run started: system metrics count their steps from it
    datasets: set[tuple[str, str]] = field(default_factory=set)  # inputs logged: (name, digest)


class Tracker:
    """Journal + in-order applier for one sweep (one MLflow parent run).

    `new_sweep`: the parent run was just created, so no trial run exists that this tracker
    did not open, and opening one needs no search."""

    def __init__(
        self, uri: str, experiment_id: str, parent_run_id: str, journal: Path, new_sweep: bool
    ):
        self.uri, self.exp_id, self.parent_id = uri, experiment_id, parent_run_id
        self.new_sweep = new_sweep
        self.journal = Journal(journal)
        self.applied = self.journal.applied()
        self.pending = collections.deque(self.journal.unapplied())
        self.runs: dict[str, TrialRun] = {}
        self.error: str | None = None
        self.closing = False
        self.checkpointed = time.monotonic()
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._apply_all, name="divsweep-tracker", daemon=True)
        self.thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        """Journal `record` (it outlives this process when this returns); it reaches MLflow
        in order."""
        with self.changed:
            self.journal.append(record)
            self.pending.append(record)
            self.changed.notify_all()

    def submitted(self) -> int:
        """How many records this tracker has been handed, its journal's earlier ones included."""
        with self.changed:
            return self.applied + len(self.pending)

    def wait_applied(self, count: int, timeout_s: float) -> bool:
        """Wait until the first `count` records are in MLflow (False: not within `timeout_s`,
        or MLflow refused one)."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.applied >= count or self.error is not None, timeout=timeout_s
            )
            return self.applied >= count

    def drain(self, stall_s: float | None = None) -> tuple[int, str | None]:
        """Wait until every record is in MLflow, MLflow refused one, or nothing went in for
        `stall_s` (default: the MLflow retry window). Returns (records left, refusal)."""
        stall_s = tracking.retry_s() if stall_s is None else stall_s
        with self.changed:
            seen, since = self.applied, time.monotonic()
            while self.pending and self.error is None:
                if self.applied != seen:
                    seen, since = self.applied, time.monotonic()
                left = since + stall_s - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(timeout=left)
            self._checkpoint()
            return len(self.pending), self.error

    def close(self) -> None:
        """Stop the applier; what it has not sent stays in the journal. A call it is retrying
        against an absent server is not waited for (the thread is a daemon)."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join(timeout=2 * tracking.MAX_BACKOFF_S)
        with self.changed:
            self._checkpoint()
            self.journal.close()

    def _checkpoint(self) -> None:
        """The journal on disk and its applied mark current (the caller holds the lock)."""
        self.journal.sync()
        self.journal.set_applied(self.applied)
        self.checkpointed = time.monotonic()

    def _apply_all(self) -> None:
        mlf = tracking.client(self.uri)
        while True:
            with self.changed:
                while not self.pending and not self.closing:
                    self.changed.wait()
                if self.closing:
                    return
                record = self.pending[0]
            try:
                self._apply_until_answered(mlf, record)
            except Exception as err:
                with self.changed:
                    self.error = f"{type(err).__name__}: {err}"
                    self.changed.notify_all()
                return
            with self.changed:
                self.pending.popleft()
                self.applied += 1
                if time.monotonic() - self.checkpointed >= CHECKPOINT_EVERY_S:
                    self._checkpoint()
                self.changed.notify_all()

    def _apply_until_answered(self, mlf, record: dict[str, Any]) -> None:
        """However long the server is away: meanwhile the record waits in the journal."""
        while True:
            try:
                return self._apply(mlf, record)
            except Exception as err:
                if not tracking.unreachable(err) or self.closing:
                    raise
            with self.changed:
                self.changed.wait_for(lambda: self.closing, timeout=tracking.MAX_BACKOFF_S)

    def _apply(self, mlf, record: dict[str, Any]) -> None:
        key, op = record["key"], record["op"]
        if op == "open":
            run = self._run(mlf, key)
            if run is None:
                name = f"{record['tags'].get(tracking.SWEEP, 'trial')}-{key[:8]}"
                tags = {tracking.PARENT: self.parent_id, **record["tags"]}
                run_id = tracking.create_trial_run(
                    mlf, self.exp_id, key, name, record["params"], tags, record["time_ms"]
                )
                self.runs[key] = TrialRun(run_id, -1.0, Status.RUNNING, record["time_ms"])
            else:
                tracking.reopen_trial_run(mlf, run.run_id, record["tags"])
                run.status = Status.RUNNING
            return
        run = self._run(mlf, key)
        if run is None:  # a status for a trial that failed before its run was opened
            return
        if op == "log":
            self._log(mlf, run, record)
        elif op == "inputs":
            # every attempt reports its datasets; a run gets each once
            new = [d for d in record["datasets"] if _dataset_id(d) not in run.datasets]
            if new:
                tracking.log_datasets(mlf, run.run_id, new)
                run.datasets.update(_dataset_id(d) for d in new)
        elif op == "artifact":
            self._log_artifact(mlf, run, record)
        elif op == "figures":
            tracking.retrying(
                tracking.log_metrics,
                mlf,
                run.run_id,
                record["metrics"],
                record["step"],
                timestamp_ms=record["timestamp_ms"],
            )
        elif op == "status":
            if run.status not in record["unless"]:
                tracking.set_status(mlf, run.run_id, record["status"], record["time_ms"])
                run.status = record["status"]
        else:
            raise ValueError(f"unknown tracking record op {op!r}")

    def _log_artifact(self, mlf, run: TrialRun, record: dict[str, Any]) -> None:
        """Copied from where the trial left it (on replay: logged again, the same file)."""
        source = storage.join(record["source"], record["name"])
        with tempfile.TemporaryDirectory(prefix="divsweep-artifact-") as scratch:
            local = Path(scratch) / record["name"]
            if not storage.download(source, local):  # a checkpoint written before the file was
                if not record.get("optional"):
                    logger.warning(
                        "%s not found; run %s gets no %s", source, run.run_id, record["path"]
                    )
                return
            tracking.retrying(mlf.log_artifact, run.run_id, str(local), record["path"])

    def _log(self, mlf, run: TrialRun, record: dict[str, Any]) -> None:
        """An evaluation at or below the run's logged step (a resumed trial retraining from
        its checkpoint) is not logged again, but its system samples are new: what the
        retraining cost. (Records journaled before system metrics existed have none.)"""
        system = record.get("system", [])
        fresh = record["step"] > run.logged_step
        if fresh or system:
            tracking.retrying(
                tracking.log_metrics,
                mlf,
                run.run_id,
                record["metrics"] if fresh else {},
                record["step"],
                last=fresh and record["last"],
                timestamp_ms=record["timestamp_ms"],
                tags=record["tags"] if fresh else {},
                system=system,
                start_ms=run.start_ms,
            )
        if fresh:
            run.logged_step = record["step"]
        elif record["last"]:
            tracking.set_status(mlf, run.run_id, Status.FINISHED, record["timestamp_ms"])
        if record["last"]:
            run.status = Status.FINISHED

    def _run(self, mlf, key: str) -> TrialRun | None:
        """The trial's run: opened by this tracker, or (a resumed sweep) by an earlier one."""
        if key not in self.runs and not self.new_sweep:
            found = tracking.find_trial(mlf, self.exp_id, self.parent_id, key)
            if found is not None:
                self.runs[key] = TrialRun(
                    found.info.run_id,
                    found.data.metrics.get("step", -1.0),
                    found.data.tags.get(tracking.STATUS, Status.RUNNING),
                    found.info.start_time,
                    {(i.dataset.name, i.dataset.digest) for i in found.inputs.dataset_inputs},
                )
        return self.runs.get(key)


def _dataset_id(described: dict[str, Any]) -> tuple[str, str]:
    return described["name"], described["digest"]


# Each record carries the time of what it records: MLflow gets the trial's times, not the
# (later, during an outage much later) times the records were sent.


def open_record(key: str, params: dict[str, str], tags: dict[str, str]) -> dict[str, Any]:
    return {"op": "open", "key": key, "params": params, "tags": tags, "time_ms": _now_ms()}


def log_record(
    key: str,
    metrics: dict[str, float],
    last: bool,
    tags: dict[str, str],
    system: list | None = None,
) -> dict[str, Any]:
    """An evaluation; `system`: the samples the trial took since its previous one."""
    return {
        "op": "log",
        "key": key,
        "step": int(metrics["step"]),
        # also makes a resend of this record the same point, which MLflow does not repeat
        "timestamp_ms": _now_ms(),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "last": last,
        "tags": tags,
        "system": system or [],
    }


def figures_record(key: str, metrics: dict[str, float], step: int) -> dict[str, Any]:
    """Figures about the trial rather than an evaluation (what it cost so far, at `step`):
    logged whatever the run's logged step, and closing nothing."""
    return {
        "op": "figures",
        "key": key,
        "step": step,
        "timestamp_ms": _now_ms(),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


def inputs_record(key: str, datasets: list[dict[str, Any]]) -> dict[str, Any]:
    """`datasets`: as workers/inputs.py describes them."""
    return {"op": "inputs", "key": key, "datasets": datasets}


def artifact_record(
    key: str, source: str, name: str, artifact_path: str, optional: bool = False
) -> dict[str, Any]:
    """A file of the trial's (`name` in the folder `source`: a local path or a storage URI such
    as its checkpoint's) to log on its run under `artifact_path`; `optional`: a file the
    trial may not have written, whose absence is no warning."""
    return {
        "op": "artifact",
        "key": key,
        "source": source,
        "name": name,
        "path": artifact_path,
        "optional": optional,
    }


def status_record(key: str, status: str, unless: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "op": "status",
        "key": key,
        "status": status,
        "unless": list(unless),
        "time_ms": _now_ms(),
    }


def _now_ms() -> int:
    return int(time.time() * 1000)
