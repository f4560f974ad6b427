"""Train one user trial: the user's module and datamodule under divsweep's callback; no Ray,
no MLflow (the caller reports)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from divsweep.trainer.callback import ReportEachValidation
from divsweep.trainer.checkpoint import CHECKPOINT_FILE
from divsweep.trainer.fit import quiet_lightning, resolve_precision
from divsweep.trainer.plugin import instantiate
from divsweep.trainer.preemption import CheckpointOnNotice
from divsweep.trainer.user_trial import DATA_ARGUMENT, UserTrialConfig


def build_modules(
    config: UserTrialConfig, data=None
) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The user's LightningModule and LightningDataModule from their checked init_args; the
    datamodule gets the built sets (`data`, a TrialData) when the trial has a data section."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = instantiate(config.model, pl.LightningModule, "model")
    supplied = {DATA_ARGUMENT: data} if config.data is not None else {}
    datamodule = instantiate(config.datamodule, pl.LightningDataModule, "datamodule", **supplied)
    return module, datamodule


def fit_user_trial(
    config: UserTrialConfig,
    callback: ReportEachValidation,
    *,
    data=None,
    resume_from: Path | None = None,
    accelerator: str = "auto",
) -> dict[str, float]:
    """`Trainer.fit` of the trial's classes; `callback` reports and checkpoints each
    validation (and on a preemption notice, through CheckpointOnNotice), and `resume_from` (a
    directory it checkpointed to) continues from that step.
    Returns the last metrics reported."""
    quiet_lightning()
    module, datamodule = build_modules(config, data)
    trainer = pl.Trainer(
        **config.trainer.lightning(),
        precision=resolve_precision(config.trainer.precision, accelerator),
        accelerator=accelerator,
        devices=1,
        callbacks=[callback, CheckpointOnNotice(callback, callback.key)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(callback.workdir),
    )
    ckpt = None if resume_from is None else Path(resume_from) / CHECKPOINT_FILE
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    return callback.metrics
