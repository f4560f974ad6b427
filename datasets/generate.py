"""Build the Arrow tables: training set, eval on seen rules, eval on unseen rules.

Every random draw comes from a generator seeded by the config (and a fixed stream tag per
purpose), so a config always yields the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pyarrow as pa

from divsweep.datasets.config import DataConfig, EvalConfig, TaskBase, validation_size
from divsweep.datasets.families import resolve
from divsweep.datasets.rewrite import Examples, Rule
from divsweep.datasets.sampling import allocate, head_mask
from divsweep.datasets.vocab import encode_batch, prompt_text
from divsweep.errors import SpecError

# Bump when generated content changes for an unchanged config: it is part of every cache key.
GENERATOR_VERSION = "1"
NEVER_TRAINED = "never_trained"  # the seen-eval bucket of rules that got no training example


def unseen_rules(task: TaskBase) -> tuple[Rule, ...]:
    """The held-out pool, never trained on: the first n_unseen rules of the universe order, or
    with `holdout_patterns` K the first n_unseen whose pattern is one of the K reserved ones."""
    if task.holdout_patterns is None:
        return resolve(task.family).rules(task, task.n_unseen)
    return _pattern_holdout(task)[0]


@lru_cache(maxsize=16)
def _pattern_holdout(task: TaskBase) -> tuple[tuple[Rule, ...], frozenset[str]]:
    """(held-out pool, reserved patterns): the first `holdout_patterns` distinct patterns of the
    universe order, and the first n_unseen rules of that order with one of them."""
    family, asked = resolve(task.family), 4 * task.n_unseen
    while True:
        order = family.rules(task, asked)
        reserved = frozenset(list(dict.fromkeys(x for x, _ in order))[: task.holdout_patterns])
        pool = [rule for rule in order if rule[0] in reserved][: task.n_unseen]
        complete = len(reserved) == task.holdout_patterns and len(pool) == task.n_unseen
        if complete:
            return tuple(pool), reserved
        if len(order) < asked:  # the universe ran out
            raise SpecError(
                f"data.task.n_unseen: only {len(pool)} rules have one of the "
                f"{len(reserved)} held-out patterns, got {task.n_unseen}"
            )
        asked *= 2


def _excluded(task: TaskBase) -> Callable[[Rule], bool]:
    """Whether a rule may not be trained on: a held-out rule, or with `holdout_patterns` any
    rule whose pattern is reserved for the held-out pool."""
    if task.holdout_patterns is not None:
        reserved = _pattern_holdout(task)[1]
        return lambda rule: rule[0] in reserved
    return set(unseen_rules(task)).__contains__


def _candidates(cfg: DataConfig, n: int) -> tuple[Rule, ...]:
    """The first n rules of this set's candidate order: the universe order (`rules: prefix`), or
    the order of the same universe under a universe seed derived from the rule seed (`rules:
    resampled`). Either passes held-out rules, which `training_rules` skips."""
    task = cfg.task
    family = resolve(task.family)
    if cfg.rule_order_seed is None:
        return family.rules(task, n)
    state = np.random.SeedSequence([task.universe_seed, cfg.rule_order_seed, 0x7A1E])
    reordered = task.model_copy(
        update={"universe_seed": int(state.generate_state(1)[0]), "n_unseen": 0}
    )
    return family.rules(reordered, n)


def training_rules(cfg: DataConfig) -> tuple[Rule, ...]:
    """The first n_instructions allowed rules of the candidate order: nested across
    n_instructions for one rule seed, and never a held-out rule (nor pattern, if so set)."""
    excluded = _excluded(cfg.task)
    want, asked = cfg.n_instructions, cfg.n_instructions + cfg.task.n_unseen
    while True:
        candidates = _candidates(cfg, asked)
        allowed = [rule for rule in candidates if not excluded(rule)]
        if len(allowed) >= want:
            return tuple(allowed[:want])
        if len(candidates) < asked:  # the universe ran out
            raise SpecError(
                f"data.n_instructions: the task has only {len(allowed)} training rules outside "
                f"its held-out {'rules' if cfg.task.holdout_patterns is None else 'patterns'}, "
                f"got {want}"
            )
        asked *= 2


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
    """seen_examples rows on the set's rules, each rule equally likely (not by frequency): it
    asks whether each instruction was learned, rare ones included; rules with no training
    example are bucket `never_trained`.

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
    counts = allocate(cfg)
    head = head_mask(counts) if cfg.distribution == "powerlaw" else np.zeros(len(counts), bool)
    bucket = [_seen_bucket(cfg, counts[i], head[i]) for i in which.tolist()]
    return _table(ex, which + task.n_unseen, bucket)


def _seen_bucket(cfg: DataConfig, count: int, head: bool) -> str:
    """never_trained: a rule of the set that got no example (power law); it is evaluated apart,
    since it was never seen. Otherwise head / tail (power law) or all."""
    if count == 0:
        return NEVER_TRAINED
    if cfg.distribution == "uniform":
        return "all"
    return "head" if head else "tail"


# eval_unseen_table's input streams, one per held-out split
_UNSEEN_STREAMS = {"test": 0x0A5E, "val": 0x0A5F}


def eval_unseen_table(task: TaskBase, eval_cfg: EvalConfig, split: str = "test") -> pa.Table:
    """unseen_examples_per_instruction rows for each test rule (`split` "test": the pool's first
    unseen_instructions) or validation rule ("val": its last `validation_size`, disjoint from
    the test rules); rule ids are positions in the pool. Depends on the task and eval configs
    only, so one file per split serves a whole sweep."""
    pool = unseen_rules(task)
    if split == "test":
        first, n = 0, eval_cfg.unseen_instructions
    else:
        n = validation_size(task, eval_cfg)
        first = len(pool) - n
    rng = np.random.default_rng([eval_cfg.seed, _UNSEEN_STREAMS[split]])
    which = np.repeat(np.arange(n), eval_cfg.unseen_examples_per_instruction)
    ex = resolve(task.family).examples(task, list(pool[first : first + n]), which, rng)
    return _table(ex, which + first)
