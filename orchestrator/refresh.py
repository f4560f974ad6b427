"""The report of a running sweep, rewritten as its trials end (local folder and the parent
run's `report/` artifacts), without slowing the sweep.

Cadence: each trial that ends asks for a refresh (`RefreshCallback`, orchestrator/tuner.py; on
Tune's loop it only notes the tracker's record count and sets a flag). One thread renders, at
most one report at a time; asks that arrive meanwhile coalesce into the next render. A render
starts only when (a) at least `every_s` (MIN_INTERVAL_S) have passed since the last one
started and (b) the renders so far and this one (expected to cost what the last did) take at
most `share` (CPU_SHARE) of one core over the time the refresher has run. So a report costs
what it costs (it grows with the sweep) and its share stays bounded: with renders of ~8 CPU s,
one every ~7 minutes; a sweep shorter than that gets only its final report. A render first
waits for MLflow to hold the records of the trials that had ended when it was asked, so a
refresh names every trial ended by then.

The render is `divsweep report` in a child process at the lowest CPU priority: Tune's loop
never waits on it nor shares an interpreter lock with it. Its CPU time (the child's own, from
wait4) is what (b) counts; the parent run gets the refreshes' count and CPU seconds when the
sweep ends, and the driver process's own CPU seconds over the same time (tracking.REFRESHES,
tracking.REFRESH_CPU_S, tracking.DRIVER_CPU_S); a render the sweep's end stops is no refresh,
but its CPU is spent: it is counted apart (tracking.REFRESHES_CUT).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from divsweep import tracking
from divsweep.orchestrator.tracker import Tracker

MIN_INTERVAL_S = 30.0
CPU_SHARE = 0.02
# what the next render is expected to take, before there is a last one to go by: one took
# 8.5 CPU s (2 renders, 17.0 s) on the shared 2-core test machine, most of it imports
FIRST_RENDER_CPU_S = 10.0
# a render waits this long at most for MLflow to hold what had ended (an outage: it renders
# what MLflow has, and the next refresh catches up)
APPLIED_WAIT_S = 60.0


class Refresher:
    """Renders `experiment`'s report into `out_dir` in the background while the sweep runs."""

    def __init__(
        self,
        experiment: str,
        tracking_uri: str,
        out_dir: Path,
        tracker: Tracker,
        every_s: float | None = None,
        share: float | None = None,
    ):
        self.experiment, self.uri, self.out_dir = experiment, tracking_uri, Path(out_dir)
        self.tracker = tracker
        # the environment's, for drills and benchmarks that need another cadence
        env = os.environ.get
        self.every_s = float(env("DIVSWEEP_REPORT_EVERY_S", MIN_INTERVAL_S) if every_s is None
                             else every_s)  # fmt: skip
        self.share = float(env("DIVSWEEP_REPORT_CPU_SHARE", CPU_SHARE) if share is None
                           else share)  # fmt: skip
        self.renders, self.cpu_s, self.last_cpu_s = 0, 0.0, FIRST_RENDER_CPU_S
        self.cut = 0  # renders `close` stopped
        self.started = time.monotonic()
        self.driver_cpu_s = -time.process_time()  # this process's own, until `close`
        self._last_start: float | None = None
        self._mark: int | None = None  # records to wait for; None: nothing asked
        self._child: subprocess.Popen | None = None
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="divsweep-report", daemon=True)
        self._thread.start()

    @property
    def rendering(self) -> bool:
        """Whether a render is in flight."""
        with self._changed:
            return self._child is not None

    def request(self) -> None:
        """Ask for a refresh holding every record the tracker has been handed so far."""
        mark = self.tracker.submitted()
        with self._changed:
            self._mark = mark
            self._changed.notify_all()

    def close(self) -> None:
        """Stop refreshing; a render in flight is stopped (the final report replaces it)."""
        with self._changed:
            self._closing = True
            if self._child is not None:
                self._child.terminate()
            self._changed.notify_all()
        self._thread.join()
        self.driver_cpu_s += time.process_time()

    def _next_start(self) -> float:
        """The earliest moment (time.monotonic) the next render may start: `every_s` after the
        last began, and when the renders so far and the next (as costly as the last) take at
        most `share` of one core over the refresher's time."""
        by_share = self.started + (self.cpu_s + self.last_cpu_s) / self.share
        if self._last_start is None:
            return by_share
        return max(self._last_start + self.every_s, by_share)

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closing or self._mark is not None)
                while not self._closing and time.monotonic() < self._next_start():
                    self._changed.wait(timeout=self._next_start() - time.monotonic())
                if self._closing:
                    return
                mark, self._mark = self._mark, None
                self._last_start = time.monotonic()
            self.tracker.wait_applied(mark, APPLIED_WAIT_S)
            self._render()

    def _render(self) -> None:
        cmd = [sys.executable, "-c", "from divsweep.cli import main; main()", "report",
               self.experiment, "--out", str(self.out_dir), "--tracking-uri", self.uri]  # fmt: skip
        with tempfile.TemporaryFile() as err:
            with self._changed:
                if self._closing:
                    return
                self._child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
                # lowest priority: on a busy driver machine the sweep's own work goes first
                os.setpriority(os.PRIO_PROCESS, self._child.pid, 19)
            # wait4, not wait: the child's own CPU time, which the cadence's share counts
            _, status, usage = os.wait4(self._child.pid, 0)
            with self._changed:
                self._child.returncode = code = os.waitstatus_to_exitcode(status)
                self._child, stopped = None, self._closing
            self.last_cpu_s = usage.ru_utime + usage.ru_stime
            self.cpu_s += self.last_cpu_s
            if stopped:
                self.cut += 1
            elif code != 0:  # loud, and the sweep goes on: the next may work
                err.seek(0)
                why = err.read().decode(errors="replace").strip()
                print(f"divsweep: refreshing the report failed: {why}", file=sys.stderr)
            else:
                self.renders += 1

    def log(self, mlf, parent_id: str) -> None:
        """The refreshes' count and CPU seconds (and the renders cut short), on the sweep's
        parent run."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        figures = {
            tracking.REFRESHES: self.renders,
            tracking.REFRESHES_CUT: self.cut,
            tracking.REFRESH_CPU_S: self.cpu_s,
            tracking.DRIVER_CPU_S: self.driver_cpu_s,
        }
        metrics = [Metric(name, float(value), now, 0) for name, value in figures.items()]
        tracking.retrying(mlf.log_batch, parent_id, metrics=metrics)
