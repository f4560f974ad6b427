"""Train and evaluate one trial with Lightning; no Ray, no MLflow (the caller reports)."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from divsweep.datasets.vocab import VOCAB
from divsweep.errors import SpecError
from divsweep.trainer import predictions
from divsweep.trainer.checkpoint import CHECKPOINT_FILE, Report, publish, write
from divsweep.trainer.config import TrialConfig, trial_key
from divsweep.trainer.data import TrialDataModule
from divsweep.trainer.evaluate import eval_metrics, training_patterns
from divsweep.trainer.module import TrialModule
from divsweep.trainer.pause import Pause
from divsweep.trainer.preemption import CheckpointOnNotice


def fit(
    config: TrialConfig,
    data,
    *,
    resume_from: Path | None = None,
    report: Report | None = None,
    workdir: Path,
    accelerator: str = "auto",
) -> dict[str, float]:
    """Train `config` on `data` (a `divsweep.datasets.TrialData`) and return the final metrics.

    At every evaluation (each `train.eval_every` steps and at the end) a checkpoint is written
    and `report(metrics, checkpoint_dir)` is called; `fit(..., resume_from=checkpoint_dir)`
    continues that run exactly where it stopped.
    """
    datamodule = TrialDataModule.attach(data, config.train, config.seed)
    return fit_datamodule(
        config,
        datamodule,
        resume_from=resume_from,
        report=report,
        workdir=workdir,
        accelerator=accelerator,
    )


def fit_datamodule(
    config: TrialConfig,
    datamodule: TrialDataModule,
    *,
    resume_from: Path | None = None,
    report: Report | None = None,
    workdir: Path,
    accelerator: str = "auto",
) -> dict[str, float]:
    """`fit` on tables already attached (what `fit` does after attaching the Arrow files)."""
    quiet_lightning()
    configure_torch(config)
    check_lengths(config.model.max_len, datamodule)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    total = config.train.total_steps(len(datamodule.train_set))
    module = TrialModule(config, len(VOCAB), total)
    evaluator = EvaluateAndReport(datamodule, config, total, Path(workdir), report)
    notice = CheckpointOnNotice(evaluator, trial_key(config))
    trainer = build_trainer(config, total, accelerator, [evaluator, notice])
    ckpt = None if resume_from is None else Path(resume_from) / CHECKPOINT_FILE
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    return evaluator.metrics


def configure_torch(config: TrialConfig) -> None:
    """This process's torch settings for the trial: CPU threads, TF32 matmuls on a GPU."""
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for whatever runs outside autocast


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16 autocast on a GPU that supports it, plain fp32 elsewhere (CPU)."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def build_trainer(config: TrialConfig, total: int, accelerator: str, callbacks) -> pl.Trainer:
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision(config.train.precision, accelerator),
        max_steps=total,
        max_epochs=-1,  # the sampler is endless; steps, not Lightning epochs, end the run
        gradient_clip_val=config.train.grad_clip,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,  # would replace the resumable sampler
    )


def check_lengths(max_len: int, datamodule: TrialDataModule, where: str = "trial.model") -> None:
    """Every prompt + output of the trial's tables fits the model's `max_len`."""
    tables = [datamodule.train_set, *datamodule.eval_sets.values()]
    longest = max(int((t.prompt_lens + t.target_lens).max()) for t in tables if len(t))
    if longest > max_len:
        raise SpecError(
            f"{where}.max_len: the longest prompt + output is {longest} tokens, "
            f"got max_len {max_len}"
        )


def quiet_lightning() -> None:
    """No banners: Lightning's info lines and its advice about workers/logging stay silent."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*LightningModule.*log.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")


class EvaluateAndReport(pl.Callback):
    """Every `eval_every` steps and at the last: evaluate, checkpoint, report. On a
    preemption notice (CheckpointOnNotice): checkpoint and report at once, without evaluating.

    Counters (examples, tokens, training time) live in the checkpoint so a resumed run's
    throughput and wall-time figures continue rather than restart.
    """

    def __init__(self, datamodule, config: TrialConfig, total: int, workdir: Path, report):
        self.datamodule = datamodule
        self.training_patterns = training_patterns(datamodule.train_set)
        self.pause = Pause(trial_key(config))  # drills only; off by default
        self.config = config
        self.total = total
        self.workdir = workdir
        self.report = report
        self.metrics: dict[str, float] = {}
        self.examples = 0
        self.tokens = 0
        self.train_time = 0.0
        self.wall_time = 0.0
        self.reported_step = -1

    def state_dict(self) -> dict:
        keys = ("metrics", "examples", "tokens", "train_time", "wall_time")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def on_train_start(self, trainer, module) -> None:
        self._start = self._train_start = time.perf_counter()
        self._wall_before = self.wall_time

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.examples += len(batch["inputs"])
        self.tokens += batch["n_tokens"]
        step = trainer.global_step
        if step % self.config.train.eval_every and step < self.total:
            return
        self._stop_clock(module)
        metrics = {"train/loss": module.pop_mean_loss()}
        with trainer.precision_plugin.forward_context():  # decode in bf16 where training is
            evaluated, examples = eval_metrics(
                module.model,
                self.datamodule.eval_sets,
                self.config.train.eval_batch_size,
                module.device,
                self.training_patterns,
            )
        metrics |= evaluated | self._progress(step)
        self.metrics = metrics
        self.reported_step = step
        checkpoint_dir = write(trainer, self.workdir)
        if examples["split"]:  # beside the checkpoint: the driver logs the last one on MLflow
            predictions.write(examples, checkpoint_dir)
        publish(self.report, metrics, checkpoint_dir)
        self.pause.at(step)
        self._train_start = time.perf_counter()

    def checkpoint_on_notice(self, trainer, metrics: dict[str, float]) -> None:
        self._stop_clock(trainer.lightning_module)
        self.reported_step = trainer.global_step
        checkpoint_dir = write(trainer, self.workdir)
        publish(self.report, self._progress(trainer.global_step) | metrics, checkpoint_dir)

    def _stop_clock(self, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()  # otherwise the clock stops before the GPU does
        self.train_time += time.perf_counter() - self._train_start

    def _progress(self, step: int) -> dict[str, float]:
        """What every report carries besides the evaluation: where training is, how fast."""
        self.wall_time = self._wall_before + time.perf_counter() - self._start
        return {
            "step": float(step),
            "epoch": self.examples / len(self.datamodule.train_set),
            "examples_seen": float(self.examples),
            "output_tokens_per_s": self.tokens / max(self.train_time, 1e-9),
            "wall_time_s": self.wall_time,
        }
