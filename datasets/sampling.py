"""How a training budget is split across instructions, and which instructions are the head."""

from __future__ import annotations

import numpy as np

from divsweep.datasets.config import DataConfig


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to `weights` that sum exactly to `total` (Hamilton's method).

    Ties in the remainder go to the earlier instruction, so the result is deterministic.
    """
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    short = total - int(counts.sum())
    order = np.lexsort((np.arange(len(share)), -(share - counts)))
    counts[order[:short]] += 1
    return counts


def allocate(cfg: DataConfig) -> np.ndarray:
    """Examples per instruction (in training order), summing exactly to `cfg.total_examples`."""
    return allocation(cfg.n_instructions, cfg.total_examples, cfg.distribution, cfg.alpha, cfg.seed)


def allocation(n: int, total: int, distribution: str, alpha: float | None, seed: int) -> np.ndarray:
    """`allocate` from the data config's values (a report has them as MLflow params).

    uniform: the budget's remainder goes one each to the first instructions.
    powerlaw: weights are numpy's `power(alpha)` draws (PMF alpha * x^(alpha-1) on [0, 1]),
    one per instruction; small alpha concentrates mass on few instructions, and an instruction
    may get 0 examples (rare instructions are effectively missing, the paper's point).
    """
    if distribution == "uniform":
        counts = np.full(n, total // n, dtype=np.int64)
        counts[: total % n] += 1
        return counts
    rng = np.random.default_rng([seed, 0xA11C])
    weights = rng.power(alpha, n)
    if weights.sum() == 0:  # only for absurdly small alpha: fall back to one instruction
        weights[0] = 1.0
    return largest_remainder(weights, total)


def head_mask(counts: np.ndarray) -> np.ndarray:
    """Head = the most frequent instructions that together cover half the training examples.

    Sorted by count (ties: training order), an instruction is head if the examples of the
    instructions before it are fewer than half the total; the rest (zero-count ones
    included) is the tail.
    """
    order = np.lexsort((np.arange(len(counts)), -counts))
    before = np.cumsum(counts[order]) - counts[order]
    mask = np.zeros(len(counts), dtype=bool)
    mask[order[before < counts.sum() / 2]] = True
    return mask
