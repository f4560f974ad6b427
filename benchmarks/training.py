"""The built-in trial's Lightning loop as `divsweep.trainer.fit` builds it, without its
evaluation: what the trainer benchmarks time."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytorch_lightning as pl

from divsweep.trainer.builtin import RewriteGPT, as_class_path
from divsweep.trainer.config import TrialConfig
from divsweep.trainer.fit import build_trainer, quiet_lightning


def training_loop(
    cfg: TrialConfig, steps: int, accelerator: str, callbacks: list[pl.Callback], **model_args
) -> tuple[pl.Trainer, RewriteGPT]:
    """The Trainer and untrained GPT of `cfg` for `steps` steps, validation off;
    `model_args` override the GPT's init_args."""
    quiet_lightning()
    generic = as_class_path(cfg)
    trainer_args = generic.trainer.model_copy(update={"max_steps": steps, "limit_val_batches": 0})
    training = generic.model_copy(update={"trainer": trainer_args})
    trainer = build_trainer(training, callbacks, Path(tempfile.gettempdir()), accelerator)
    return trainer, RewriteGPT(**generic.model.init_args | model_args)
