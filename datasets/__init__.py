"""Data layer: task generators, Arrow build + cache, memory-mapped readers.

Importing this package does not import torch; `attach` / `AttachedDataset` load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from divsweep.datasets.build import TrialData, build, build_all
from divsweep.datasets.cache import CorruptDatasetError
from divsweep.datasets.config import DataConfig, EvalConfig, Task, TaskBase, TaskConfig
from divsweep.datasets.families import FAMILIES, TaskFamily
from divsweep.datasets.rewrite import Examples, Rule, apply_rule
from divsweep.datasets.semantic import SemanticTask
from divsweep.datasets.vocab import VOCAB, decode, encode

if TYPE_CHECKING:
    from divsweep.datasets.reader import AttachedDataset, RaggedTokens, attach

__all__ = [
    "FAMILIES",
    "VOCAB",
    "AttachedDataset",
    "CorruptDatasetError",
    "DataConfig",
    "EvalConfig",
    "Examples",
    "RaggedTokens",
    "Rule",
    "SemanticTask",
    "Task",
    "TaskBase",
    "TaskConfig",
    "TaskFamily",
    "TrialData",
    "apply_rule",
    "attach",
    "build",
    "build_all",
    "decode",
    "encode",
]

_READER = {"attach", "AttachedDataset", "RaggedTokens"}


def __getattr__(name: str) -> Any:
    if name in _READER:
        from divsweep.datasets import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
