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

These are the built-in trainer's own parts (GPTModule, TrialDataModule, eval_metrics): the same
data gives the same batches, the same initialisation and the same metrics as the built-in
spec form (`model: {n_layers: ...}`, `train: {...}`), which stays as its shorter spelling
(tests/test_builtin_classes.py pins both; `benchmarks/bench_builtin.py` times them side by
side). The evaluation is Lightning's validation: one validation step per eval set, each logging
that set's greedy-decoding exact match and token accuracy under the built-in metric names.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch.utils.data import DataLoader

from divsweep.datasets.build import TrialData
from divsweep.datasets.vocab import VOCAB
from divsweep.trainer.config import ModelConfig, TrialConfig
from divsweep.trainer.data import TrialDataModule, attach_tables
from divsweep.trainer.evaluate import eval_metrics, training_patterns
from divsweep.trainer.fit import check_lengths
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
        self.examples_seen = 0  # in the checkpoint: a resumed trial goes on counting

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        self.examples_seen += len(batch["inputs"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["examples_seen"] = self.examples_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.examples_seen = checkpoint.get("examples_seen", 0)

    def setup(self, stage: str) -> None:
        check_lengths(self.model.cfg.max_len, self.trainer.datamodule, "model.init_args")

    def validation_step(self, name: str, batch_idx: int) -> None:
        data: RewriteData = self.trainer.datamodule
        metrics, _ = eval_metrics(
            self.model,
            {name: data.eval_sets[name]},
            self.eval_batch_size,
            self.device,
            data.training_patterns,
        )
        self.log_dict(metrics, batch_size=1)

    def on_validation_epoch_end(self) -> None:
        # the mean training loss since the last evaluation, as the built-in trainer reports it
        self.log("train/loss", self.pop_mean_loss(), batch_size=1)
        self.log("examples_seen", float(self.examples_seen), batch_size=1)


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
