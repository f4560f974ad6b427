"""Trade-off frontier: least data reaching a target accuracy; Pareto sets of accuracy vs cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from divsweep.orchestrator.report.builtin.aggregate import reference_slice

TARGETS = (0.5, 0.8, 0.95)
ACCURACY = "unseen_exact_match"


def targets(cells: pd.DataFrame, metric: str = ACCURACY) -> tuple[float, ...]:
    """The accuracy targets of the least-data frontier: TARGETS, preceded, where the reference
    slice's best cell stays below the first of them, by half and three quarters of that best
    (to 0.05), so that a sweep at reduced compute still draws a frontier."""
    best = reference_slice(cells)[metric].max()
    if not np.isfinite(best) or best >= TARGETS[0]:
        return TARGETS
    lower = {round(round(f * best / 0.05) * 0.05, 2) for f in (0.5, 0.75)} - {0.0}
    return (*sorted(lower), *TARGETS)


def least_examples(
    cells: pd.DataFrame, targets: tuple[float, ...] = TARGETS, metric: str = ACCURACY
) -> pd.DataFrame:
    """Per target and n_instructions: the smallest total_examples whose mean reaches the target.

    Rows exist for every (target, n_instructions) of the reference slice; `total_examples` is
    NaN where no budget tried reached the target.
    """
    ref = reference_slice(cells)
    rows = []
    for target in targets:
        for n_instr, group in ref.groupby("n_instructions", sort=True):
            reached = group[group[metric] >= target]
            best = reached.loc[reached["total_examples"].idxmin()] if len(reached) else None
            rows.append(
                {
                    "target": target,
                    "n_instructions": n_instr,
                    "total_examples": np.nan if best is None else best["total_examples"],
                    "examples_per_instruction": (
                        np.nan if best is None else best["examples_per_instruction"]
                    ),
                    metric: np.nan if best is None else best[metric],
                }
            )
    return pd.DataFrame(
        rows,
        columns=["target", "n_instructions", "total_examples", "examples_per_instruction", metric],
    )


def pareto(table: pd.DataFrame, cost: str, accuracy: str = ACCURACY) -> pd.DataFrame:
    """Rows not dominated in (accuracy higher, cost lower), sorted by cost."""
    pts = table.dropna(subset=[cost, accuracy])
    pts = pts.sort_values([cost, accuracy], ascending=[True, False])
    keep, best = [], -np.inf
    for idx, acc in pts[accuracy].items():
        if acc > best:
            keep.append(idx)
            best = acc
    return pts.loc[keep]
