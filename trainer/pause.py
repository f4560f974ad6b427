"""A test-only pause: a trial stops at a chosen step until it is released, so a fault drill kills
or cuts a sweep at a known point instead of racing a poll against the machine.

Off unless `DIVSWEEP_PAUSE_DIR` is set (the trial's environment: the driver's for an embedded
Ray, each node's for a cluster); then every trial reaching step `DIVSWEEP_PAUSE_AT_STEP`, after
it has reported that evaluation and its checkpoint, writes `<dir>/<trial key>.paused` (the step
and the trial's process id) and waits for `<dir>/<trial key>.release`.
`DIVSWEEP_PAUSE_AT_BOUNDARY` pauses the same way at a step between evaluations, where nothing is
reported; that wait also ends on a preemption notice, as the step in flight would. Each attempt
of a trial appends the first step it trains to `<dir>/<trial key>.starts`: where a retry resumed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PAUSE_DIR = "DIVSWEEP_PAUSE_DIR"
PAUSE_AT_STEP = "DIVSWEEP_PAUSE_AT_STEP"
PAUSE_AT_BOUNDARY = "DIVSWEEP_PAUSE_AT_BOUNDARY"
POLL_S = 0.1


class Pause:
    def __init__(self, key: str, interrupted: threading.Event | None = None) -> None:
        folder = os.environ.get(PAUSE_DIR)
        self.folder = Path(folder) if folder else None
        self.step = int(os.environ.get(PAUSE_AT_STEP, "0"))
        self.boundary = int(os.environ.get(PAUSE_AT_BOUNDARY, "0"))
        self.key = key
        self.interrupted = interrupted

    def at(self, step: int) -> None:
        if self.folder is not None and step == self.step:
            self._wait(step)

    def between(self, step: int) -> None:
        if self.folder is not None and step == self.boundary:
            self._wait(step)

    def started(self, step: int) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / f"{self.key}.starts", "a") as f:
                f.write(f"{step}\n")

    def _wait(self, step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{self.key}.paused").write_text(f"{step} {os.getpid()}")
        release = self.folder / f"{self.key}.release"
        while not release.exists():
            if self.interrupted is not None and self.interrupted.is_set():
                return
            time.sleep(POLL_S)


def paused(folder: Path) -> set[str]:
    """Keys of the trials paused (or once paused) in `folder`."""
    return {p.name.removesuffix(".paused") for p in folder.glob("*.paused")}


def paused_pid(folder: Path, key: str) -> int:
    """The process id of trial `key`, paused in `folder`."""
    return int((folder / f"{key}.paused").read_text().split()[1])


def release(folder: Path, key: str) -> None:
    (folder / f"{key}.release").touch()


def starts(folder: Path, key: str) -> list[int]:
    """The first step each attempt of trial `key` trained, in order."""
    path = folder / f"{key}.starts"
    return [int(line) for line in path.read_text().split()] if path.is_file() else []
