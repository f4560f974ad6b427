"""`build` / `build_all`: the Arrow files a trial needs, built once and reused from the cache."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from divsweep.datasets.cache import cache_dir as resolve_cache_dir
from divsweep.datasets.cache import dataset_key, ensure
from divsweep.datasets.config import DataConfig, EvalConfig, check_eval_fits, validation_size
from divsweep.datasets.generate import eval_seen_table, eval_unseen_table, train_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialData:
    """Plain paths: cheap to send to Ray workers, which `attach` them."""

    train: Path
    eval_seen: Path
    eval_unseen: Path  # the held-out test rules
    eval_unseen_val: Path  # the held-out validation rules (empty with validation_instructions 0)


def _read(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def build(cfg: DataConfig, eval_cfg: EvalConfig, cache_dir: Path | None = None) -> TrialData:
    """Build (or find in the cache) the training and eval files of one data config.

    Idempotent and safe to call from many processes at once: each file is built at most once,
    under a file lock, and written atomically. Each file's key covers only what its rows
    depend on, so the unseen-rule files (task + unseen eval settings) are shared by a whole sweep.
    """
    check_eval_fits(cfg.task, eval_cfg)
    root = resolve_cache_dir(cache_dir)
    data = cfg.canonical()
    evals = eval_cfg.canonical()
    per_rule = {k: evals[k] for k in ("unseen_examples_per_instruction", "seed")}
    specs = {
        "train": {"data": data},
        "eval_seen": {
            "data": data,
            "eval": {k: evals[k] for k in ("seen_examples", "seed")},
        },
        "eval_unseen": {
            "task": cfg.task.canonical(),
            "eval": {"unseen_instructions": evals["unseen_instructions"]} | per_rule,
        },
        "eval_unseen_val": {
            "task": cfg.task.canonical(),
            "eval": {"validation_instructions": validation_size(cfg.task, eval_cfg)} | per_rule,
        },
    }
    paths = {kind: root / f"{dataset_key(kind, spec)}.arrow" for kind, spec in specs.items()}
    makers = {
        "train": lambda: train_table(cfg),
        "eval_seen": lambda: eval_seen_table(cfg, eval_cfg, _read(paths["train"])),
        "eval_unseen": lambda: eval_unseen_table(cfg.task, eval_cfg, "test"),
        "eval_unseen_val": lambda: eval_unseen_table(cfg.task, eval_cfg, "val"),
    }
    for kind, path in paths.items():
        if ensure(path, kind, specs[kind], makers[kind]):
            log.info("built %s %s", kind, path)
    return TrialData(**paths)


def build_all(
    pairs: Sequence[tuple[DataConfig, EvalConfig]],
    cache_dir: Path | None = None,
    progress: bool = True,
) -> list[TrialData]:
    """`build` each (data, eval) pair in order, with a Rich progress bar; one TrialData each."""
    from rich.progress import Progress

    out = []
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("building datasets", total=len(pairs))
        for cfg, eval_cfg in pairs:
            out.append(build(cfg, eval_cfg, cache_dir))
            bar.advance(task)
    return out
