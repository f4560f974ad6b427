"""The built-in study's declaration: the metrics its trainer reports at every evaluation
(trainer/evaluate.py computes them; docs/architecture.md, "Metric names"), the one selection
reads by default and the one the report headlines.

The orchestrator, `status` and the report take the built-in study's names from here and from
nowhere else; a user's module declares its own in the spec (`selection`, `headline`), and its
metrics are whatever it logs. Importing this module imports nothing heavy.
"""

from __future__ import annotations

SELECTION = "unseen_val/exact_match"  # held-out validation rules: selection never sees test rules
HEADLINE = "unseen/exact_match"  # held-out test rules
SEEN = "seen/exact_match"  # new inputs of the training rules
LOSS = "train/loss"  # mean training loss since the last evaluation

# what a sweep of the built-in study may select on (the test rules only where a study means to)
SELECTABLE = (
    SELECTION,
    "unseen_val_applied/exact_match",
    "unseen_val/token_acc",
    SEEN,
    "seen/token_acc",
    LOSS,
    HEADLINE,
    "unseen/token_acc",
)
# every accuracy an evaluation may report (a split with no examples is left out)
ACCURACY = (
    SEEN,
    HEADLINE,
    "seen/token_acc",
    "unseen/token_acc",
    "seen_head/exact_match",
    "seen_tail/exact_match",
    "unseen_noop/exact_match",
    "unseen_applied/exact_match",
    "seen_never_trained/exact_match",
    SELECTION,
    "unseen_val_applied/exact_match",
)
# where training is and how fast, reported beside the accuracies
PROGRESS = (LOSS, "step", "epoch", "examples_seen", "output_tokens_per_s", "wall_time_s")
