"""Checkpoint on notice (trainer/notice.py says how a trial process hears one and how the attempt
ends): at its next step boundary after a notice, a trial writes a checkpoint, reports it, and
stops; Tune's retry resumes from that step, on another node."""

from __future__ import annotations

from typing import Protocol

import pytorch_lightning as pl

from divsweep import tracking
from divsweep.trainer import notice
from divsweep.trainer.pause import Pause


class Checkpointer(Protocol):
    """What CheckpointOnNotice needs of the trial's reporting callback."""

    reported_step: int  # the last step it reported (with a checkpoint); -1: none

    def checkpoint_on_notice(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        """Checkpoint the current step and report it with `metrics` and its own cheap ones
        (no evaluation: the notice's time is short)."""


class CheckpointOnNotice(pl.Callback):
    """At each step boundary, on a notice: checkpoint and report this step through `owner`,
    then stop. Goes after `owner` in the Trainer's callbacks, so that at an evaluation step the
    evaluation reports first; a step already reported waits for the next boundary (a trial at
    its last step simply ends). The count of preemptions travels in the checkpoint."""

    def __init__(self, owner: Checkpointer, key: str) -> None:
        self.owner = owner
        self.pause = Pause(key, interrupted=notice.NOTICE.given)  # drills only; off by default
        self.preemptions = 0

    def state_dict(self) -> dict:
        return {"preemptions": self.preemptions}

    def load_state_dict(self, state: dict) -> None:
        self.preemptions = state["preemptions"]

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        notice.NOTICE.training = True
        self.pause.started(trainer.global_step + 1)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        notice.NOTICE.training = False

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exc) -> None:
        notice.NOTICE.training = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        self.pause.between(step)
        if not notice.NOTICE.given.is_set() or step == self.owner.reported_step:
            return
        self.preemptions += 1
        self.owner.checkpoint_on_notice(trainer, {tracking.PREEMPTIONS: float(self.preemptions)})
        notice.NOTICE.stop(step)
