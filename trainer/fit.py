"""Train one trial with Lightning: the trial's LightningModule and LightningDataModule under
divsweep's callback (trainer/callback.py); no Ray, no MLflow (the caller reports).

A user's trial names its classes (trainer/user_trial.py); a trial of the built-in spec form
(`model: {n_layers: ...}`, `train: {...}`) is the class_path form of the built-in GPT and data
(trainer/builtin.py) and trains the same way.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from divsweep.trainer.builtin import as_class_path
from divsweep.trainer.callback import ReportEachValidation
from divsweep.trainer.checkpoint import CHECKPOINT_FILE, Report
from divsweep.trainer.config import TrialConfig, trial_key
from divsweep.trainer.plugin import instantiate
from divsweep.trainer.preemption import CheckpointOnNotice
from divsweep.trainer.user_trial import DATA_ARGUMENT, UserTrialConfig


def fit(
    config: TrialConfig,
    data,
    *,
    resume_from: Path | None = None,
    report: Report | None = None,
    workdir: Path,
    accelerator: str = "auto",
) -> dict[str, float]:
    """Train a trial of the built-in spec form on `data` (a `divsweep.datasets.TrialData`) and
    return the final metrics.

    At every evaluation (each `train.eval_every` steps and at the last) a checkpoint is written
    and `report(metrics, checkpoint_dir)` is called; `fit(..., resume_from=checkpoint_dir)`
    continues that run exactly where it stopped.
    """
    callback = ReportEachValidation(workdir, report, trial_key(config), selection=None)
    return fit_user_trial(
        as_class_path(config), callback, data=data, resume_from=resume_from, accelerator=accelerator
    )


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
    callbacks = [callback, CheckpointOnNotice(callback, callback.key)]
    trainer = build_trainer(config, callbacks, callback.workdir, accelerator)
    ckpt = None if resume_from is None else Path(resume_from) / CHECKPOINT_FILE
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    return callback.metrics


def build_modules(
    config: UserTrialConfig, data=None
) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The trial's LightningModule and LightningDataModule from their checked init_args; the
    datamodule gets the built sets (`data`, a TrialData) when the trial has a data section."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = instantiate(config.model, pl.LightningModule, "model")
    supplied = {DATA_ARGUMENT: data} if config.data is not None else {}
    datamodule = instantiate(config.datamodule, pl.LightningDataModule, "datamodule", **supplied)
    return module, datamodule


def build_trainer(
    config: UserTrialConfig, callbacks: list[pl.Callback], workdir: Path, accelerator: str = "auto"
) -> pl.Trainer:
    """The trial's Trainer: its `trainer` arguments, with what divsweep owns (one device, the
    callbacks, no logger or checkpointing of Lightning's, `workdir`)."""
    return pl.Trainer(
        **config.trainer.lightning(),
        precision=resolve_precision(config.trainer.precision, accelerator),
        accelerator=accelerator,
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(workdir),
    )


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16 autocast on a GPU that supports it, plain fp32 elsewhere (CPU)."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def quiet_lightning() -> None:
    """No banners: Lightning's info lines and its advice about workers/logging stay silent."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*LightningModule.*log.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
