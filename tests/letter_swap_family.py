"""A task family defined outside divsweep, as a user would (docs/datasets.md, "Adding a task
family"): a rule x -> y swaps every letter x of the input for the letter y. A spec names it as
`task: {family: "letter_swap_family:FAMILY", ...}`; no divsweep file changes."""

from __future__ import annotations

import string

import numpy as np
from pydantic import Field

from divsweep.datasets import Examples, Rule, TaskBase, TaskFamily


class LetterSwapTask(TaskBase):
    alphabet_size: int = Field(8, ge=2, le=26)
    input_length: int = Field(10, ge=1)


def too_many(task: LetterSwapTask, n: int) -> str | None:
    pairs = task.alphabet_size * (task.alphabet_size - 1)
    if n + task.n_unseen > pairs:
        return f"n_instructions + task.n_unseen exceeds the {pairs} letter pairs"
    return None


def rules(task: LetterSwapTask, n: int) -> tuple[Rule, ...]:
    letters = string.ascii_lowercase[: task.alphabet_size]
    pairs = [(x, y) for x in letters for y in letters if x != y]
    order = np.random.default_rng(task.universe_seed).permutation(len(pairs))
    return tuple(pairs[i] for i in order[:n])


def examples(
    task: LetterSwapTask, rule_list: list[Rule], which: np.ndarray, rng: np.random.Generator
) -> Examples:
    out = Examples(pattern=[], replacement=[], input=[], output=[], applied=[])
    for i in which.tolist():
        x, y = rule_list[i]
        codes = rng.integers(0, task.alphabet_size, task.input_length)
        z = "".join(string.ascii_lowercase[c] for c in codes)
        out.pattern.append(x)
        out.replacement.append(y)
        out.input.append(z)
        out.output.append(z.replace(x, y))
        out.applied.append(x in z)
    return out


FAMILY = TaskFamily(LetterSwapTask, too_many, rules, examples)
