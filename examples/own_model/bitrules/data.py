"""The LightningDataModule: reads the sets divsweep built (its `data` argument) as tensors."""

from __future__ import annotations

import pyarrow as pa
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from divsweep.datasets import TrialData

# the order of the validation loaders; the module names its metrics after them
VALIDATION_SETS = {"val": "eval_unseen_val", "test": "eval_unseen", "seen": "eval_seen"}


def bits_of(values: torch.Tensor, bits: int) -> torch.Tensor:
    return (values.unsqueeze(-1) >> torch.arange(bits)) & 1


class BitRules(pl.LightningDataModule):
    def __init__(self, data: TrialData, bits: int = 6, batch_size: int = 64) -> None:
        super().__init__()
        self.data, self.bits, self.batch_size = data, bits, batch_size

    def _tensors(self, kind: str) -> TensorDataset:
        # divsweep's files are Arrow IPC, memory-mapped: rows are read from the page cache
        with pa.memory_map(str(getattr(self.data, kind))) as source:
            table = pa.ipc.open_file(source).read_all()
        x, k, y = (torch.tensor(table[c].to_numpy(), dtype=torch.long) for c in ("x", "k", "y"))
        features = torch.cat([bits_of(x, self.bits), bits_of(k, self.bits)], -1).float()
        return TensorDataset(features, bits_of(y, self.bits).float())

    def setup(self, stage: str | None = None) -> None:
        self.sets = {kind: self._tensors(kind) for kind in ("train", *VALIDATION_SETS.values())}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.sets[kind], batch_size=1024) for kind in VALIDATION_SETS.values()]
