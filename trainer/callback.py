"""divsweep's Lightning callback for any LightningModule: each validation end becomes one report
of what the module logged, with a checkpoint to resume from.

A module logs with `self.log(...)`; whatever is in `trainer.callback_metrics` when a validation
ends (validation metrics, and training metrics logged on step or epoch) is reported, with the
step, the epoch and the wall time, and a full Lightning checkpoint is written beside it.
`fit(..., ckpt_path=that checkpoint)` continues from that step: a resumed or retried trial
reports no step twice. Training that reaches `max_steps` between validations is validated at
that last step, so a trial's final report is its final model's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import pytorch_lightning as pl
import torch

from divsweep.errors import SpecError
from divsweep.trainer.checkpoint import Report, publish, write
from divsweep.trainer.pause import Pause

# what divsweep adds to a module's metrics at every report
STEP, EPOCH, WALL_TIME = "step", "epoch", "wall_time_s"


class MetricNotLogged(SpecError):
    """The sweep selects on a metric the module never logs: the spec's to fix."""


@runtime_checkable
class WritesBesideCheckpoint(Protocol):
    """A module with files of its own to keep with each validation's checkpoint (the built-in
    GPT: its per-example predictions, which the driver logs on the trial's MLflow run)."""

    def write_beside_checkpoint(self, folder: Path) -> None:
        """Write this validation's files into `folder`, the checkpoint's."""


class ReportEachValidation(pl.Callback):
    """After every validation (sanity checks aside): checkpoint, then `report(metrics, dir)`.

    `selection` is the metric the sweep's scheduler and searches read; a module that has not
    logged it by its first report fails the trial with one line naming what it did log.
    Older checkpoints are removed once a newer one has been reported. On a preemption notice
    (CheckpointOnNotice) it checkpoints and reports the step, epoch and wall time."""

    def __init__(self, workdir: Path, report: Report | None, key: str, selection: str | None):
        self.workdir, self.report, self.selection = Path(workdir), report, selection
        self.key = key
        self.pause = Pause(key)  # drills only; off by default
        self.metrics: dict[str, float] = {}
        self.wall_time = 0.0
        self.reported_step = -1
        self.total_steps: int | None = None  # known once training starts

    def state_dict(self) -> dict:
        keys = ("metrics", "wall_time", "reported_step")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start, self._wall_before = time.perf_counter(), self.wall_time
        estimated = trainer.estimated_stepping_batches  # max_steps, or epochs x batches
        self.total_steps = int(estimated) if estimated != float("inf") else None

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        # Lightning validates on its cadence only; asking it to stop at the last step makes it
        # validate there too (it stops there anyway)
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_step == self.reported_step:
            return
        self._report(trainer)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # training can end between validations (max_steps off the validation cadence): its
        # last state is still reported and checkpointed, so the run holds its final step
        if trainer.global_step != self.reported_step:
            self._report(trainer)

    def checkpoint_on_notice(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        # not what the module logged: between validations its validation metrics are the last
        # validation's, and MLflow would file them under this step
        self._checkpoint(trainer, metrics)

    def _report(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        logged = _logged(trainer)
        if self.selection is not None and self.selection not in logged:
            names = ", ".join(sorted(logged)) or "nothing"
            raise MetricNotLogged(
                f"selection.metric: {self.selection!r} is not logged by the module; at step "
                f"{step} it logged {names}"
            )
        self._checkpoint(trainer, logged, validated=True)
        self.pause.at(step)

    def _checkpoint(self, trainer: pl.Trainer, logged: dict[str, float], validated=False) -> None:
        self.wall_time = self._wall_before + time.perf_counter() - self._start
        self.metrics = (
            # a module may log its own epoch (a fractional one, over an endless sampler)
            {EPOCH: float(trainer.current_epoch)}
            | logged
            | {STEP: float(trainer.global_step), WALL_TIME: self.wall_time}
        )
        self.reported_step = trainer.global_step
        folder = write(trainer, self.workdir)
        module = trainer.lightning_module
        if validated and isinstance(module, WritesBesideCheckpoint):
            module.write_beside_checkpoint(folder)
        publish(self.report, self.metrics, folder)


def _logged(trainer: pl.Trainer) -> dict[str, float]:
    """The scalars the module has logged (`self.log`) so far."""
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if isinstance(value, torch.Tensor) and value.numel() == 1 or isinstance(value, float)
    }
