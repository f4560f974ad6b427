"""The built-in GPT on a user's table of prompts and completions: no code of the user's.

```yaml
model: {class_path: divsweep.trainer.text.TextGPT, init_args: {n_layers: 2, d_model: 128}}
datamodule:
  class_path: divsweep.trainer.text.TextData
  init_args: {prompt_column: instruction, completion_column: output}
data: {source: {path: my_tasks.parquet, group_column: task}, ...}
```

Text is byte-level (UTF-8 bytes after the built-in vocabulary's PAD / BOS / EOS), so any
language or format works; a completion ends with EOS. The module is the built-in study's GPT
(trainer/model.py) with its warmup + cosine schedule, and it reports what the built-in study
reports on the same splits: greedy-decoding exact match on the held-out validation groups
(`unseen_val/exact_match`, what selection reads), the held-out test groups
(`unseen/exact_match`) and new rows of the training groups (`seen/exact_match`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from divsweep.datasets.build import TrialData
from divsweep.datasets.vocab import EOS
from divsweep.trainer.config import ModelConfig
from divsweep.trainer.data import TokenTable, eval_batch, train_batch
from divsweep.trainer.decode import greedy_decode
from divsweep.trainer.model import GPT
from divsweep.trainer.module import lr_multiplier

SPECIALS = 3  # the built-in vocabulary's PAD, BOS, EOS: byte b is token b + SPECIALS
VOCAB_SIZE = 256 + SPECIALS
# validation loader order -> the metric prefix each reports under (the built-in study's names)
SPLITS = {"eval_unseen_val": "unseen_val", "eval_unseen": "unseen", "eval_seen": "seen"}


def encode(texts: list[str], eos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Byte tokens of each text (with EOS after it if `eos`): flat values and row offsets."""
    rows = [np.frombuffer(t.encode("utf-8"), np.uint8).astype(np.int16) + SPECIALS for t in texts]
    if eos:
        rows = [np.append(r, np.int16(EOS)) for r in rows]
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate(rows) if rows else np.zeros(0, np.int16)
    return torch.from_numpy(values), torch.from_numpy(offsets)


def token_table(table: pa.Table, prompt_column: str, completion_column: str) -> TokenTable:
    prompts = encode(table.column(prompt_column).to_pylist(), eos=False)
    targets = encode(table.column(completion_column).to_pylist(), eos=True)
    return TokenTable(*prompts, *targets)


class TextData(pl.LightningDataModule):
    """The sets divsweep built from the user's table, tokenized to bytes once per trial."""

    def __init__(
        self,
        data: TrialData,
        prompt_column: str = "prompt",
        completion_column: str = "completion",
        batch_size: int = 64,
        eval_batch_size: int = 256,
    ) -> None:
        super().__init__()
        self.data, self.batch_size, self.eval_batch_size = data, batch_size, eval_batch_size
        self.columns = (prompt_column, completion_column)

    def setup(self, stage: str | None = None) -> None:
        self.tables = {}
        for kind in ("train", *SPLITS):
            with pa.memory_map(str(getattr(self.data, kind))) as source:
                table = pa.ipc.open_file(source).read_all()
            missing = [c for c in self.columns if c not in table.column_names]
            if missing:
                raise ValueError(
                    f"datamodule.init_args: column {missing[0]!r} is not in the table "
                    f"(it has {', '.join(table.column_names)})"
                )
            self.tables[kind] = token_table(table, *self.columns)

    def train_dataloader(self) -> DataLoader:
        table = self.tables["train"]
        return DataLoader(
            range(len(table)),
            batch_size=self.batch_size,
            shuffle=True,  # a new order each epoch, from the trial's seeded torch RNG
            collate_fn=lambda idx: train_batch(table, torch.tensor(idx)),
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.tables[kind]) for kind in SPLITS]

    def _eval_loader(self, table: TokenTable) -> DataLoader:
        # sorted by prompt length: little padding, few decode steps past every row's EOS
        order = torch.from_numpy(np.argsort(table.prompt_lens.numpy(), kind="stable"))
        batches = order.split(self.eval_batch_size)
        return DataLoader(batches, batch_size=None, collate_fn=lambda i: eval_batch(table, i))


class TextGPT(pl.LightningModule):
    """The built-in GPT over bytes; its defaults are the CPU study's scale, not the paper's."""

    def __init__(
        self,
        n_layers: int = 2,
        d_model: int = 128,
        n_heads: int = 4,
        max_len: int = 256,
        positions: Literal["learned", "rope"] = "rope",
        lr: float = 1.0e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        config = ModelConfig(
            n_layers=n_layers, d_model=d_model, n_heads=n_heads, max_len=max_len,
            positions=positions,
        )  # fmt: skip
        self.model = GPT(config, VOCAB_SIZE)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(batch["inputs"], batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=len(batch["inputs"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        targets, lens = batch["targets"], batch["target_lens"]
        out = greedy_decode(self.model, batch["prompts"], batch["valid"], targets.shape[1])
        in_target = torch.arange(targets.shape[1], device=out.device)[None, :] < lens[:, None]
        exact = (((out == targets) & in_target).sum(1) == lens).float()
        name = list(SPLITS.values())[dataloader_idx]
        self.log(f"{name}/exact_match", exact.mean(), batch_size=len(exact),
                 add_dataloader_idx=False)  # fmt: skip

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=(0.9, 0.95)
        )
        total = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_multiplier(step, hp.warmup_steps, total)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
