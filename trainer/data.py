"""Batches from the memory-mapped Arrow datasets: padding, length bucketing, resumable order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from divsweep.datasets.vocab import PAD
from divsweep.trainer.config import TrainConfig
from divsweep.trainer.model import IGNORE


@dataclass(frozen=True)
class TokenTable:
    """Prompts and targets as flat token buffers + offsets (views of the mmap, no copy)."""

    prompt_values: torch.Tensor  # uint8, 1-D
    prompt_offsets: torch.Tensor  # int64, len n + 1
    target_values: torch.Tensor
    target_offsets: torch.Tensor
    applied: np.ndarray | None = None  # bool per example: pattern present (False = no-op)
    bucket: np.ndarray | None = None  # str per example: head / tail / all
    # the attached Arrow table: rule ids and texts, read only for per-example predictions
    source: pa.Table | None = None

    @classmethod
    def from_attached(cls, ds) -> TokenTable:
        """From a `divsweep.datasets.AttachedDataset` (the Arrow file, memory-mapped)."""
        names = ds.table.column_names
        column = lambda name: ds.table.column(name).to_numpy(zero_copy_only=False)  # noqa: E731
        return cls(
            prompt_values=ds.prompts.values,
            prompt_offsets=ds.prompts.offsets.to(torch.int64),
            target_values=ds.targets.values,
            target_offsets=ds.targets.offsets.to(torch.int64),
            applied=column("applied").astype(bool) if "applied" in names else None,
            bucket=column("bucket").astype(str) if "bucket" in names else None,
            source=ds.table,
        )

    def __len__(self) -> int:
        return len(self.prompt_offsets) - 1

    @property
    def prompt_lens(self) -> torch.Tensor:
        return self.prompt_offsets.diff()

    @property
    def target_lens(self) -> torch.Tensor:
        return self.target_offsets.diff()


def _gather(values, offsets, idx, shift, width) -> tuple[torch.Tensor, torch.Tensor]:
    """Row i, column j holds token (j - shift[i]) of example idx[i]; also returns validity."""
    starts, lens = offsets[idx], offsets[idx + 1] - offsets[idx]
    src = torch.arange(width)[None, :] - shift[:, None]
    valid = (src >= 0) & (src < lens[:, None])
    flat = (starts[:, None] + src).clamp_(0, max(len(values) - 1, 0))
    return values[flat].long().masked_fill_(~valid, PAD), valid


def train_batch(table: TokenTable, idx: torch.Tensor) -> dict:
    """Right-padded `prompt + target`; labels are the next token on target positions only."""
    p_lens = table.prompt_lens[idx]
    t_lens = table.target_lens[idx]
    width = int((p_lens + t_lens).max())
    zero = torch.zeros_like(p_lens)
    prompt, in_prompt = _gather(table.prompt_values, table.prompt_offsets, idx, zero, width)
    target, in_target = _gather(table.target_values, table.target_offsets, idx, p_lens, width)
    seq = torch.where(in_prompt, prompt, target)
    labels = seq.masked_fill(~in_target, IGNORE)
    return {
        "inputs": seq[:, :-1].contiguous(),
        "labels": labels[:, 1:].contiguous(),
        "n_tokens": int(t_lens.sum()),  # host-side count: throughput without a device sync
    }


def eval_batch(table: TokenTable, idx: torch.Tensor) -> dict:
    """Left-padded prompts (so every row's next token is at the same column) + padded targets."""
    p_lens = table.prompt_lens[idx]
    width = int(p_lens.max())
    prompts, valid = _gather(table.prompt_values, table.prompt_offsets, idx, width - p_lens, width)
    t_lens = table.target_lens[idx]
    zero = torch.zeros_like(t_lens)
    targets, _ = _gather(table.target_values, table.target_offsets, idx, zero, int(t_lens.max()))
    return {"prompts": prompts, "valid": valid, "targets": targets, "target_lens": t_lens}


class BucketBatchSampler:
    """Endless stream of index batches whose order is a pure function of (seed, epoch).

    Each epoch is a seeded permutation cut into chunks of `bucket_batches` batches; a chunk is
    sorted by length before it is split so a batch pads to similar lengths, and the batches are
    then shuffled. Step s is always batch s, so a resumed run starts at its global step and
    sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(
        self, lengths: torch.Tensor, batch_size: int, bucket_batches: int, seed: int, start: int
    ) -> None:
        self.lengths = lengths.numpy()
        self.batch_size = batch_size
        self.chunk = batch_size * bucket_batches
        self.seed = seed
        self.start = start
        self.batches_per_epoch = -(-len(self.lengths) // batch_size)

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        batches = []
        for c in range(0, len(order), self.chunk):
            chunk = order[c : c + self.chunk]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [
                chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)
            ]
        return [torch.from_numpy(batches[i]) for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[torch.Tensor]:
        step, cached = self.start, (None, None)
        while True:
            epoch, k = divmod(step, self.batches_per_epoch)
            if cached[0] != epoch:
                cached = (epoch, self.epoch(epoch))
            yield cached[1][k]
            step += 1


class _TrainBatches(torch.utils.data.Dataset):
    def __init__(self, table: TokenTable) -> None:
        self.table = table

    def __getitem__(self, idx: torch.Tensor) -> dict:
        return train_batch(self.table, idx)


def _as_is(batch: dict) -> dict:
    return batch


# eval set name (the prefix of its metrics) -> the `TrialData` file it is read from
EVAL_FILES = {"seen": "eval_seen", "unseen": "eval_unseen", "unseen_val": "eval_unseen_val"}


def eval_paths(data) -> list[tuple[str, Path]]:
    """(eval set name, file) of a `divsweep.datasets.TrialData`."""
    return [(name, getattr(data, kind)) for name, kind in EVAL_FILES.items()]


def attach_tables(data) -> tuple[TokenTable, dict[str, TokenTable]]:
    """The training table and the eval tables by name of a `divsweep.datasets.TrialData`,
    memory-mapped."""
    from divsweep.datasets import attach

    evals = {name: TokenTable.from_attached(attach(path)) for name, path in eval_paths(data)}
    return TokenTable.from_attached(attach(data.train)), evals


class TrialDataModule(pl.LightningDataModule):
    """Attaches the trial's Arrow files; serves training batches and the eval tables."""

    def __init__(
        self,
        train: TokenTable,
        eval_sets: dict[str, TokenTable],
        batch_size: int,
        bucket_batches: int,
        seed: int,
    ):
        super().__init__()
        self.train_set = train
        self.eval_sets = eval_sets
        self.batch_size, self.bucket_batches, self.seed = batch_size, bucket_batches, seed

    @staticmethod
    def attach(data, cfg: TrainConfig, seed: int) -> TrialDataModule:
        """From a `divsweep.datasets.TrialData` (paths); each file is memory-mapped once."""
        train, evals = attach_tables(data)
        return TrialDataModule(train, evals, cfg.batch_size, cfg.bucket_batches, seed)

    def sampler(self, start: int = 0) -> BucketBatchSampler:
        lengths = self.train_set.prompt_lens + self.train_set.target_lens
        return BucketBatchSampler(lengths, self.batch_size, self.bucket_batches, self.seed, start)

    def train_dataloader(self) -> DataLoader:
        # Lightning restores global_step before it asks for data, so this resumes mid-epoch.
        return self.loader(self.trainer.global_step if self.trainer is not None else 0)

    def loader(self, start: int = 0) -> DataLoader:
        """Training batches from optimizer step `start` on, endlessly."""
        return DataLoader(
            _TrainBatches(self.train_set),
            batch_size=None,
            sampler=self.sampler(start),
            collate_fn=_as_is,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: the loader's seed draw must not advance the global stream
            # that dropout uses, or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator(),
        )
