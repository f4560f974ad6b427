"""A test-only pause: a trial stops at a chosen evaluation step until it is released, so a fault
drill kills or cuts a sweep at a known point instead of racing a poll against the machine.

Off unless `DIVSWEEP_PAUSE_DIR` is set (the trial's environment: the driver's for an embedded
Ray, each node's for a cluster); then every trial reaching step `DIVSWEEP_PAUSE_AT_STEP`, after
it has reported that evaluation and its checkpoint, writes `<dir>/<trial key>.paused` and waits
for `<dir>/<trial key>.release`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_DIR = "DIVSWEEP_PAUSE_DIR"
PAUSE_AT_STEP = "DIVSWEEP_PAUSE_AT_STEP"
POLL_S = 0.1


class Pause:
    def __init__(self, key: str) -> None:
        folder = os.environ.get(PAUSE_DIR)
        self.folder = Path(folder) if folder else None
        self.step = int(os.environ.get(PAUSE_AT_STEP, "0"))
        self.key = key

    def at(self, step: int) -> None:
        if self.folder is None or step != self.step:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{self.key}.paused").write_text(str(step))
        release = self.folder / f"{self.key}.release"
        while not release.exists():
            time.sleep(POLL_S)


def paused(folder: Path) -> set[str]:
    """Keys of the trials paused (or once paused) in `folder`."""
    return {p.name.removesuffix(".paused") for p in folder.glob("*.paused")}


def release(folder: Path, key: str) -> None:
    (folder / f"{key}.release").touch()
