"""Where a trial's checkpoints go and how one is handed on: written under the trial's workdir,
reported with its metrics, and only then are the older ones removed. Every checkpoint a trial
writes (at an evaluation, a validation, or on a preemption notice) goes this way."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl

Report = Callable[[dict[str, float], Path | None], None]
CHECKPOINT_FILE = "trial.ckpt"


def write(trainer: pl.Trainer, workdir: Path) -> Path:
    """A full Lightning checkpoint of the trainer's current step; its folder."""
    folder = Path(workdir) / "checkpoints" / f"step-{trainer.global_step:08d}"
    trainer.save_checkpoint(folder / CHECKPOINT_FILE)
    return folder


def publish(report: Report | None, metrics: dict[str, float], folder: Path) -> None:
    """`report(metrics, folder)`, then drop the older checkpoints: one goes only once a newer
    one exists and has been reported."""
    if report is not None:
        report(metrics, folder)
    for old in folder.parent.glob("step-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
