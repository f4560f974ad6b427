"""The built-in study through the interface any user's module takes: its GPT and its rewrite
(or semantic) data as a LightningModule and a LightningDataModule named by `class_path`.

```yaml
model:
  class_path: divsweep.trainer.builtin.RewriteGPT
  init_args: {n_layers: 2, d_model: 64, positions: rope, lr: 3.0e-3, warmup_steps: 50}
datamodule: {class_path: divsweep.trainer.builtin.RewriteData, init_args: {batch_size: 64}}
trainer: {max_steps: 3000, val_check_interval: 500, check_val_every_n_epoch: null,
          gradient_clip_val: 1.0, num_sanity_val_steps: 0}
data: {task: {family: rewrite, ...}, n_instructions: 64, budget: 40000}  # generated, as built-in
eval: {seen_examples: 500, unseen_instructions: 100, ...}
```

The built-in spec form (`model: {n_layers: ...}`, `train: {...}`) is the shorter spelling of
this one: `as_class_path` turns a trial of that form into these classes, and that is how it
trains (trainer/fit.py). The evaluation is Lightning's validation: one validation step per eval
set, each logging that set's greedy-decoding exact match and token accuracy under the built-in
metric names; its per-example predictions go beside the checkpoint (trainer/predictions.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from divsweep.datasets.build import TrialData
from divsweep.datasets.vocab import VOCAB
from divsweep.errors import SpecError
from divsweep.trainer import predictions
from divsweep.trainer.config import ModelConfig, TrialConfig
from divsweep.trainer.data import TrialDataModule, attach_tables
from divsweep.trainer.evaluate import eval_metrics, training_patterns
from divsweep.trainer.module import GPTModule
from divsweep.trainer.user_trial import UserTrialConfig


class RewriteData(TrialDataModule):
    """The built sets of a generated task (`data` + `eval` sections), memory-mapped: training
    batches in the built-in trainer's resumable, length-bucketed order, and the eval sets as
    the validation data (one item per non-empty set, its name)."""

    def __init__(
        self,
        data: TrialData,
        batch_size: int = 128,
        bucket_batches: int = 50,
        seed: int | None = None,
    ) -> None:
        train, evals = attach_tables(data)
        # None: the trial's seed, which Lightning's seed_everything publishes for its workers
        order_seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        super().__init__(train, evals, batch_size, bucket_batches, order_seed)
        self.training_patterns = training_patterns(train)

    def val_dataloader(self) -> DataLoader:
        names = [name for name, table in self.eval_sets.items() if len(table)]
        # its own generator: starting the loader must not draw from the stream dropout uses
        return DataLoader(names, batch_size=None, generator=torch.Generator())


class RewriteGPT(GPTModule):
    """The built-in GPT; the defaults are the paper's model (6 layers, width 256, 4 heads)
    and the built-in trainer's optimisation."""

    def __init__(
        self,
        n_layers: int = 6,
        d_model: int = 256,
        n_heads: int = 4,
        dropout: float = 0.0,
        max_len: int = 256,
        positions: Literal["learned", "rope"] = "learned",
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        schedule: Literal["cosine", "linear"] = "cosine",
        compile: bool = False,
        eval_batch_size: int = 512,
        matmul_precision: Literal["highest", "high", "medium"] = "high",
        num_threads: int | None = None,
    ) -> None:
        shape = ModelConfig(
            n_layers=n_layers, d_model=d_model, n_heads=n_heads, dropout=dropout,
            max_len=max_len, positions=positions,
        )  # fmt: skip
        super().__init__(
            shape,
            len(VOCAB),
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            schedule=schedule,
            compile=compile,
        )
        self.eval_batch_size = eval_batch_size
        self.matmul_precision = matmul_precision  # of float32 matmuls on a GPU: high is TF32
        self.num_threads = num_threads  # CPU threads; None: what the process has (Ray's CPUs)
        # in the checkpoint: a resumed trial goes on counting
        self.examples_seen, self.output_tokens, self.train_time = 0, 0, 0.0
        self._examples: dict[str, list] = {}  # this validation's per-example predictions
        self._clock = 0.0

    def on_fit_start(self) -> None:
        check_lengths(self.model.cfg.max_len, self.trainer.datamodule)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        if self.device.type == "cuda":  # for what runs outside autocast
            torch.set_float32_matmul_precision(self.matmul_precision)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # counted here, not at the batch's end: a notice's checkpoint (a callback's, at the
        # batch's end, before the module's hook) must hold this batch
        self.examples_seen += len(batch["inputs"])
        self.output_tokens += batch["n_tokens"]
        return super().training_step(batch, batch_idx)

    # training time excludes evaluation: throughput is of training
    def on_train_start(self) -> None:
        self._clock = time.perf_counter()

    def on_validation_start(self) -> None:
        self._examples = {}
        if self.trainer.sanity_checking:  # before training: nothing to time
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # otherwise the clock stops before the GPU does
        self.train_time += time.perf_counter() - self._clock

    def on_validation_end(self) -> None:
        self._clock = time.perf_counter()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["progress"] = {
            "examples_seen": self.examples_seen,
            "output_tokens": self.output_tokens,
            "train_time": self.train_time,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "progress" not in checkpoint:
            raise RuntimeError(
                "this checkpoint was written by an earlier divsweep, whose built-in trial kept "
                "its counters elsewhere: resume its sweep with the version that started it"
            )
        for name, value in checkpoint["progress"].items():
            setattr(self, name, value)

    def validation_step(self, name: str, batch_idx: int) -> None:
        data: RewriteData = self.trainer.datamodule
        metrics, examples = eval_metrics(
            self.model,
            {name: data.eval_sets[name]},
            self.eval_batch_size,
            self.device,
            data.training_patterns,
        )
        for column, values in examples.items():
            self._examples.setdefault(column, []).extend(values)
        self.log_dict(metrics, batch_size=1)

    def on_validation_epoch_end(self) -> None:
        # the mean training loss since the last evaluation, and where training is and how fast
        train_rows = len(self.trainer.datamodule.train_set)
        self.log_dict(
            {
                "train/loss": self.pop_mean_loss(),
                "examples_seen": float(self.examples_seen),
                "epoch": self.examples_seen / train_rows,  # the sampler is endless
                "output_tokens_per_s": self.output_tokens / max(self.train_time, 1e-9),
            },
            batch_size=1,
        )

    def write_beside_checkpoint(self, folder: Path) -> None:
        if self._examples.get("split"):  # eval sets read from Arrow files have their rows
            predictions.write(self._examples, folder)


def check_lengths(max_len: int, datamodule: TrialDataModule) -> None:
    """Every prompt + output of the trial's tables fits the model's `max_len`."""
    tables = [datamodule.train_set, *datamodule.eval_sets.values()]
    longest = max(int((t.prompt_lens + t.target_lens).max()) for t in tables if len(t))
    if longest > max_len:
        raise SpecError(
            f"model max_len: the longest prompt + output is {longest} tokens, got max_len {max_len}"
        )


MODULE, DATAMODULE = f"{__name__}.{RewriteGPT.__name__}", f"{__name__}.{RewriteData.__name__}"


def as_class_path(trial: TrialConfig) -> UserTrialConfig:
    """The built-in spec form of a trial (`model: {n_layers: ...}`, `train: {...}`) in the
    class_path form: the same data, model, optimisation, evaluation cadence and seed."""
    train = trial.train
    model = trial.model.model_dump() | {
        "lr": train.lr,
        "weight_decay": train.weight_decay,
        "warmup_steps": train.warmup_steps,
        "schedule": train.schedule,
        "compile": train.compile,
        "eval_batch_size": train.eval_batch_size,
        "num_threads": train.num_threads,
    }
    datamodule = {"batch_size": train.batch_size, "bucket_batches": train.bucket_batches}
    trainer = {
        # the training set holds exactly total_examples rows (the budget is exact)
        "max_steps": train.total_steps(trial.data.total_examples),
        "val_check_interval": train.eval_every,
        "check_val_every_n_epoch": None,  # the sampler is endless: steps time validation
        "gradient_clip_val": train.grad_clip,
        "precision": train.precision,
        "num_sanity_val_steps": 0,
    }
    return UserTrialConfig.model_validate(
        {
            "model": {"class_path": MODULE, "init_args": model},
            "datamodule": {"class_path": DATAMODULE, "init_args": datamodule},
            "trainer": trainer,
            "data": trial.data.model_dump(mode="json"),
            "eval": trial.eval.model_dump(mode="json"),
            "seed": trial.seed,
        }
    )


def trained_form(config: TrialConfig | UserTrialConfig) -> UserTrialConfig:
    """The form a trial trains in: a user's trial as it is, the built-in spec form as its
    class_path form."""
    return config if isinstance(config, UserTrialConfig) else as_class_path(config)


def builtin_gpt(trial: TrialConfig) -> RewriteGPT:
    """The untrained GPT of a trial of the built-in spec form (what `as_class_path` names)."""
    return RewriteGPT(**as_class_path(trial).model.init_args)
