"""The drills' pause: off without its environment; with it, a trial waits at its step until
released."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from divsweep.trainer.pause import (
    PAUSE_AT_BOUNDARY,
    PAUSE_AT_STEP,
    PAUSE_DIR,
    Pause,
    paused,
    paused_pid,
    release,
    starts,
)


def test_off_without_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PAUSE_DIR, raising=False)
    Pause("k").at(50)  # returns at once: nothing to wait for


def test_waits_at_its_step_until_released(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PAUSE_DIR, str(tmp_path))
    monkeypatch.setenv(PAUSE_AT_STEP, "50")
    pause = Pause("trial-a")
    pause.at(40)  # another step: no pause
    assert paused(tmp_path) == set()
    waiting = threading.Thread(target=pause.at, args=(50,))
    waiting.start()
    while not paused(tmp_path):  # the file the trial writes once it has stopped
        waiting.join(0.05)
    assert paused(tmp_path) == {"trial-a"} and waiting.is_alive()
    release(tmp_path, "trial-a")
    waiting.join(10)
    assert not waiting.is_alive()


def test_boundary_pause_ends_on_a_notice_and_attempts_record_their_first_step(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PAUSE_DIR, str(tmp_path))
    monkeypatch.setenv(PAUSE_AT_BOUNDARY, "15")
    notice = threading.Event()
    pause = Pause("trial-b", interrupted=notice)
    pause.at(15)  # no evaluation pause is set: the boundary one is separate
    pause.started(1)
    waiting = threading.Thread(target=pause.between, args=(15,))
    waiting.start()
    while not paused(tmp_path):
        waiting.join(0.05)
    assert waiting.is_alive() and paused_pid(tmp_path, "trial-b") == os.getpid()
    notice.set()  # a preemption notice ends the wait, as it would end the step in flight
    waiting.join(10)
    assert not waiting.is_alive()
    pause.started(16)
    assert starts(tmp_path, "trial-b") == [1, 16]
