"""Build the Arrow tables: training set, eval on seen rules, eval on unseen rules.

Every random draw comes from a generator seeded by the config (and a fixed stream tag per
purpose), so a config always yields the same rows in the same order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from divsweep.datasets.config import DataConfig, EvalConfig, TaskBase
from divsweep.datasets.families import resolve
from divsweep.datasets.rewrite import Examples, Rule
from divsweep.datasets.sampling import allocate, head_mask
from divsweep.datasets.vocab import encode_batch, prompt_text

# Bump when generated content changes for an unchanged config: it is part of every cache key.
GENERATOR_VERSION = "1"


def training_rules(cfg: DataConfig) -> tuple[Rule, ...]:
    """The first n_instructions rules after the unseen pool: nested across n_instructions."""
    task = cfg.task
    every = resolve(task.family).rules(task, task.n_unseen + cfg.n_instructions)
    return every[task.n_unseen :]


def unseen_rules(task: TaskBase) -> tuple[Rule, ...]:
    return resolve(task.family).rules(task, task.n_unseen)


def _table(ex: Examples, rule_ids: np.ndarray, bucket: list[str] | None = None) -> pa.Table:
    prompts = [prompt_text(*row) for row in zip(ex.pattern, ex.replacement, ex.input, strict=True)]
    columns = {
        "rule_id": pa.array(rule_ids, pa.int32()),
        "pattern": pa.array(ex.pattern, pa.string()),
        "replacement": pa.array(ex.replacement, pa.string()),
        "input": pa.array(ex.input, pa.string()),
        "output": pa.array(ex.output, pa.string()),
        "applied": pa.array(ex.applied, pa.bool_()),
    }
    if bucket is not None:
        columns["bucket"] = pa.array(bucket, pa.string())
    columns["prompt_ids"] = _ragged(*encode_batch(prompts, eos=False))
    columns["target_ids"] = _ragged(*encode_batch(ex.output, eos=True))
    return pa.table(columns)


def _ragged(values: np.ndarray, offsets: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.uint8()))


def train_table(cfg: DataConfig) -> pa.Table:
    """cfg.total_examples rows, shuffled so a sequential reader sees rules mixed."""
    rng = np.random.default_rng([cfg.seed, 0x7EA1])
    counts = allocate(cfg)
    which = rng.permutation(np.repeat(np.arange(cfg.n_instructions), counts))
    ex = resolve(cfg.task.family).examples(cfg.task, list(training_rules(cfg)), which, rng)
    return _table(ex, which + cfg.task.n_unseen)


def eval_seen_table(cfg: DataConfig, eval_cfg: EvalConfig, train: pa.Table) -> pa.Table:
    """seen_examples rows on the training rules, each rule equally likely (not by frequency):
    it asks whether each instruction was learned, rare ones included.

    Inputs are drawn from a separate stream; an (rule, input) pair that also occurs in the
    training set is redrawn, so these are new inputs wherever the input space allows it.
    """
    task = cfg.task
    rule_list = list(training_rules(cfg))
    used = set(zip(train["rule_id"].to_pylist(), train["input"].to_pylist(), strict=True))
    rng = np.random.default_rng([eval_cfg.seed, cfg.seed, 0x5EE4])
    which = rng.integers(0, cfg.n_instructions, eval_cfg.seen_examples)
    ex = resolve(task.family).examples(task, rule_list, which, rng)
    for _ in range(20):  # collisions only happen on tiny input spaces; give up after a few rounds
        stale = [i for i, z in enumerate(ex.input) if (int(which[i]) + task.n_unseen, z) in used]
        if not stale:
            break
        fresh = resolve(task.family).examples(task, rule_list, which[stale], rng)
        for j, i in enumerate(stale):
            for name in ("input", "output", "applied"):
                getattr(ex, name)[i] = getattr(fresh, name)[j]
    if cfg.distribution == "uniform":
        bucket = ["all"] * len(which)
    else:
        head = head_mask(allocate(cfg))
        bucket = ["head" if head[i] else "tail" for i in which.tolist()]
    return _table(ex, which + task.n_unseen, bucket)


def eval_unseen_table(task: TaskBase, eval_cfg: EvalConfig) -> pa.Table:
    """unseen_examples_per_instruction rows for each of the first unseen_instructions held-out
    rules; depends on the task and eval configs only, so one file serves a whole sweep."""
    rng = np.random.default_rng([eval_cfg.seed, 0x0A5E])
    which = np.repeat(
        np.arange(eval_cfg.unseen_instructions), eval_cfg.unseen_examples_per_instruction
    )
    ex = resolve(task.family).examples(task, list(unseen_rules(task)), which, rng)
    return _table(ex, which)
