"""The drills' pause: off without its environment; with it, a trial waits at its step until
released."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from divsweep.trainer.pause import PAUSE_AT_STEP, PAUSE_DIR, Pause, paused, release


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
