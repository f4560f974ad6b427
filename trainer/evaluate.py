"""Exact-match and token accuracy on the seen and unseen eval sets, per bucket and op type,
and the per-example predictions behind them (trainer/predictions.py)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import torch

from divsweep.datasets.generate import NEVER_TRAINED
from divsweep.datasets.vocab import EOS, PAD, decode
from divsweep.trainer import predictions
from divsweep.trainer.data import TokenTable, eval_batch
from divsweep.trainer.decode import greedy_decode
from divsweep.trainer.model import GPT


@torch.no_grad()
def score(
    model: GPT, table: TokenTable, batch_size: int, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per example: exact match (bool), number of target tokens predicted right, and the
    decoded prediction."""
    n = len(table)
    exact = np.zeros(n, dtype=bool)
    correct = np.zeros(n, dtype=np.int64)
    predicted = [""] * n
    # Sorting by length keeps padding (and decode steps past every row's EOS) small.
    order = np.lexsort((table.target_lens.numpy(), table.prompt_lens.numpy()))
    for start in range(0, n, batch_size):
        idx = torch.from_numpy(order[start : start + batch_size])
        batch = {k: v.to(device) for k, v in eval_batch(table, idx).items()}
        targets, lens = batch["targets"], batch["target_lens"]
        out = greedy_decode(model, batch["prompts"], batch["valid"], targets.shape[1])
        in_target = torch.arange(targets.shape[1], device=device)[None, :] < lens[:, None]
        right = (out == targets) & in_target
        n_right = right.sum(1)
        exact[idx.numpy()] = (n_right == lens).cpu().numpy()
        correct[idx.numpy()] = n_right.cpu().numpy()
        for i, row in zip(idx.tolist(), out.cpu().tolist(), strict=True):
            predicted[i] = decode(t for t in row if t not in (EOS, PAD))
    return exact, correct, predicted


def eval_metrics(
    model: GPT,
    eval_sets: dict[str, TokenTable],
    batch_size: int,
    device: torch.device | str,
    training_patterns: frozenset[str] = frozenset(),
) -> tuple[dict[str, float], dict[str, list]]:
    """The metric names of docs/architecture.md (a split with no examples is left out), and the
    per-example predictions (trainer/predictions.py columns) of the splits read from Arrow;
    `training_patterns` are the patterns of the rules trained on."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    rows: dict[str, list] = {name: [] for name in predictions.SCHEMA.names}
    for name, table in eval_sets.items():
        if len(table) == 0:
            continue
        exact, correct, predicted = score(model, table, batch_size, device)
        splits = np.full(len(table), name, dtype=object)
        if name == "seen" and table.bucket is not None:
            # rules of the set that got no training example are not "seen": scored apart
            splits[table.bucket == NEVER_TRAINED] = predictions.NEVER_TRAINED_SPLIT
        if table.source is not None:
            _add_predictions(rows, splits, table, exact, predicted, training_patterns)
        scored = splits == name
        if scored.any():
            metrics[f"{name}/exact_match"] = float(exact[scored].mean())
            lens = table.target_lens.numpy()[scored]
            metrics[f"{name}/token_acc"] = float(correct[scored].sum() / lens.sum())
        groups = {}
        if name == "seen" and table.bucket is not None:
            groups = {f"seen_{b}": table.bucket == b for b in ("head", "tail")}
            groups[predictions.NEVER_TRAINED_SPLIT] = ~scored
        if name.startswith("unseen") and table.applied is not None:
            groups |= {f"{name}_noop": ~table.applied, f"{name}_applied": table.applied}
        for group, members in groups.items():
            if members.any():
                metrics[f"{group}/exact_match"] = float(exact[members].mean())
    model.train(was_training)
    return metrics, rows


def training_patterns(train: TokenTable) -> frozenset[str]:
    if train.source is None or "pattern" not in train.source.column_names:
        return frozenset()
    return frozenset(pc.unique(train.source.column("pattern")).to_pylist())


def _add_predictions(rows, splits, table: TokenTable, exact, predicted, patterns) -> None:
    src = table.source
    rows["split"] += splits.tolist()
    rows["rule_id"] += src.column("rule_id").to_pylist()
    rows["input"] += src.column("input").to_pylist()
    rows["target"] += src.column("output").to_pylist()
    rows["prediction"] += predicted
    rows["correct"] += exact.tolist()
    rows["applied"] += src.column("applied").to_pylist()
    rows["pattern_in_training"] += [p in patterns for p in src.column("pattern").to_pylist()]
