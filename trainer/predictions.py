"""Per-example predictions of a trial's evaluation: the file's name, columns and readers.

A trial writes its latest evaluation's predictions beside its checkpoint; the driver logs the
file on the trial's MLflow run when the trial ends, and the report computes its intervals and
its transition fit from these rows (rules and examples), not from one mean per trial.
No torch here: the report imports this module.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FILE = "predictions.parquet"
ARTIFACT_DIR = "predictions"  # on the trial's MLflow run: predictions/predictions.parquet
SCHEMA = pa.schema(
    [
        # eval set: seen / seen_never_trained / unseen (test rules) / unseen_val
        ("split", pa.string()),
        ("rule_id", pa.int32()),
        ("input", pa.string()),
        ("target", pa.string()),
        ("prediction", pa.string()),
        ("correct", pa.bool_()),  # exact match
        ("applied", pa.bool_()),  # the rule's pattern occurs in the input (False: a no-op)
        # the rule's pattern is also the pattern of a training rule: a held-out rule whose
        # pattern was trained on tests less than one whose pattern is new (vocabulary coverage)
        ("pattern_in_training", pa.bool_()),
    ]
)
# rows of the seen eval set whose rule got no training example (a power-law set's missing ones)
NEVER_TRAINED_SPLIT = "seen_never_trained"
# metric column of the report → the examples it is the exact match over
METRIC_SPLITS = {
    "seen_exact_match": ("seen", None),
    "seen_never_trained_exact_match": (NEVER_TRAINED_SPLIT, None),
    "unseen_exact_match": ("unseen", None),
    "unseen_applied_exact_match": ("unseen", True),
    "unseen_noop_exact_match": ("unseen", False),
    "unseen_val_exact_match": ("unseen_val", None),
    "unseen_val_applied_exact_match": ("unseen_val", True),
}


def write(rows: dict[str, list], directory: Path) -> Path:
    path = Path(directory) / FILE
    pq.write_table(pa.table(rows, schema=SCHEMA), path)
    return path


def read(path: str | Path) -> pd.DataFrame:
    return pq.read_table(path, schema=SCHEMA).to_pandas()


def for_metric(examples: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """The rows a metric column is computed over; None for a metric without per-example rows."""
    if metric not in METRIC_SPLITS:
        return None
    split, applied = METRIC_SPLITS[metric]
    rows = examples[examples["split"] == split]
    return rows if applied is None else rows[rows["applied"] == applied]
