"""Attach a built dataset: memory-mapped, zero-copy token tensors, checked before use."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from divsweep.datasets.cache import check


@dataclass(frozen=True)
class RaggedTokens:
    """Variable-length token rows: row i is values[offsets[i]:offsets[i + 1]].

    `values` is a read-only view of the memory-mapped file: never write to it.
    """

    values: torch.Tensor  # 1-D uint8
    offsets: torch.Tensor  # 1-D int32, len(rows) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]


def _tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():
        # the mmap is read-only; torch warns because it cannot mark tensors read-only
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(array)


def _ragged(column: pa.ChunkedArray) -> RaggedTokens:
    if column.num_chunks == 0:  # a table of no rows (e.g. no validation rules) has no batch
        return RaggedTokens(torch.zeros(0, dtype=torch.uint8), torch.zeros(1, dtype=torch.int32))
    (chunk,) = column.chunks  # written as one record batch, see cache.write_dataset
    # np.frombuffer on the Arrow buffers themselves: a view of the mmap. (Array.to_numpy is
    # zero-copy too, but its first call imports pandas: ~30 MB per reader process.)
    offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
    values = chunk.values
    data = np.frombuffer(values.buffers()[1], np.uint8, len(values), values.offset)
    return RaggedTokens(_tensor(data), _tensor(offsets))


class AttachedDataset:
    """A built Arrow file, memory-mapped: rows live in the page cache, shared by every process
    on the node that attaches the same file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.metadata: dict = check(self.path)
        source = pa.memory_map(str(self.path))
        self.table: pa.Table = pa.ipc.open_file(source).read_all()
        self.prompts = _ragged(self.table["prompt_ids"])
        self.targets = _ragged(self.table["target_ids"])

    def __len__(self) -> int:
        return self.table.num_rows

    def prompt_tokens(self, i: int) -> torch.Tensor:
        return self.prompts[i]

    def target_tokens(self, i: int) -> torch.Tensor:
        return self.targets[i]


def attach(path: Path | str) -> AttachedDataset:
    """Map a dataset built by `build` (raises CorruptDatasetError if it is damaged)."""
    return AttachedDataset(path)
