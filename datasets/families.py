"""Task family registry: `task.family` names a built-in family or a user's, by import path.

A family is a `TaskFamily`: its config class (a `TaskBase` subclass), a check of how many
training rules its settings allow, its rules in a fixed universe order (the first `n_unseen`
are the held-out pool, training sets take the rules after them), and an example generator.
Every family writes the same Arrow layout (`generate._table`), so the trainer, the evaluation
and the report need no change for a new one.

A user's family lives in their own package: `task: {family: "mypkg.tasks:FAMILY", ...}` imports
`mypkg.tasks` and uses its `FAMILY` attribute (docs/datasets.md, "Adding a task family").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from divsweep.datasets import rewrite, semantic
from divsweep.datasets.config import TaskBase, TaskConfig


@dataclass(frozen=True)
class TaskFamily:
    config: type[TaskBase]
    # an error message if the task cannot give `n` training rules besides its held-out pool
    too_many: Callable[[TaskBase, int], str | None]
    rules: Callable[[TaskBase, int], tuple[rewrite.Rule, ...]]
    examples: Callable[
        [TaskBase, list[rewrite.Rule], np.ndarray, np.random.Generator], rewrite.Examples
    ]


FAMILIES: dict[str, TaskFamily] = {
    "rewrite": TaskFamily(TaskConfig, rewrite.too_many, rewrite.rules, rewrite.examples),
    "semantic": TaskFamily(
        semantic.SemanticTask, semantic.too_many, semantic.rules, rewrite.examples
    ),
}


class UnknownFamily(LookupError):
    pass


def resolve(name: str) -> TaskFamily:
    """The built-in family `name`, else the `TaskFamily` at import path `module:attribute`.

    Messages leave out the name: the spec error that shows them ends with `got '<name>'`.
    """
    if name in FAMILIES:
        return FAMILIES[name]
    module_name, colon, attribute = name.partition(":")
    if not colon or not module_name or not attribute:
        raise UnknownFamily(
            f"unknown family: built-in are {', '.join(FAMILIES)}; "
            "name your own as 'module:attribute'"
        )
    try:
        found: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise UnknownFamily(f"cannot be loaded: {err}") from None
    if not isinstance(found, TaskFamily):
        what = "a class" if isinstance(found, type) else f"a {type(found).__name__}"
        raise UnknownFamily(f"is {what}, not a divsweep.datasets.TaskFamily")
    return found
