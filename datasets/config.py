"""Configs of the data layer: what task, which training set, which eval sets.

Invalid values raise `divsweep.errors.SpecError` naming the field (`data.budget: ...`).
Defaults follow the paper (arXiv 2402.10891) where it says something; where it is silent
the choice is documented on the field and in docs/datasets.md.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from divsweep.config import FrozenConfig
from divsweep.errors import SpecError

LengthRange = tuple[int, int]


def _as_range(value: Any) -> Any:
    # `pattern_length: 20` in YAML means exactly 20
    return (value, value) if isinstance(value, int) else value


def _ordered_positive(value: LengthRange) -> LengthRange:
    if value[0] < 1 or value[1] < value[0]:
        raise ValueError("must be [min, max] with 1 <= min <= max")
    return value


# A [min, max] setting of any family's config; a single number n means [n, n].
Range = Annotated[LengthRange, BeforeValidator(_as_range), AfterValidator(_ordered_positive)]


class TaskBase(FrozenConfig):
    """What every task family's config has: its name, the held-out pool size, the universe seed.

    A family subclasses this with its own settings (`TaskConfig` for `rewrite`,
    `semantic.SemanticTask`); `family` selects the subclass when a spec is parsed (`Task`).
    """

    _root: ClassVar[str] = "task"

    family: str
    n_unseen: int = Field(
        1100, ge=0, description="held-out pool: test rules first, validation rules last"
    )
    universe_seed: int = 0
    # K: the first K distinct patterns x of the universe order are reserved for the held-out
    # pool, which draws only rules with them, and no training rule has one; so unseen-rule
    # accuracy cannot come from training on the same pattern in another pair (coverage)
    holdout_patterns: int | None = Field(
        None, ge=1, description="patterns reserved for held-out rules; None: rules held out"
    )


class TaskConfig(TaskBase):
    """Family `rewrite`: rules x -> y applied to inputs z (the paper's task)."""

    family: Literal["rewrite"] = "rewrite"
    alphabet_size: int = Field(26, ge=2, le=26, description="first N lowercase letters")
    pattern_length: Range = Field((20, 20), description="|x| range [min, max]; paper: 20")
    # The paper fixes |x| = 20 but never says how |y| is drawn; its own example (aa -> bac)
    # changes length, so |y| is uniform on [1, 20]: outputs vary in length as well as content.
    replacement_length: Range = Field((1, 20), description="|y| range; paper silent")
    input_length: Range = Field((50, 50), validate_default=True, description="|z| range; paper: 50")
    p_pattern_present: float = Field(
        1.0, ge=0.0, le=1.0, description="1.0 = paper Task 1; 0.5-0.9 = Task 2 (10-50% no-ops)"
    )
    mode: Literal["leftmost", "all"] = Field(
        "leftmost",
        description="leftmost: replace the first occurrence once (paper); all: str.replace",
    )

    @field_validator("input_length")
    @classmethod
    def _pattern_fits(cls, value: LengthRange, info: ValidationInfo) -> LengthRange:
        pattern = info.data.get("pattern_length")
        if pattern and pattern[1] > value[0]:
            raise ValueError(f"min must be >= pattern_length max ({pattern[1]}) so x fits in z")
        return value


def _as_task(value: Any) -> Any:
    """Parse a task mapping with its family's config class (`family` absent: `rewrite`)."""
    if not isinstance(value, dict):
        return value
    from divsweep.datasets.families import UnknownFamily, resolve  # they import this module

    name = value.get("family", "rewrite")
    try:
        family = resolve(name)
    except UnknownFamily as err:
        # raised as a located error so the message names `….task.family`
        raise ValidationError.from_exception_data(
            "task",
            [{"type": "value_error", "loc": ("family",), "input": name, "ctx": {"error": err}}],
        ) from None
    return family.config.model_validate(value)


# A task config of any family. SerializeAsAny: dumps (hashes, MLflow params, Ray payloads) carry
# the family's own fields, not only the base's.
Task = Annotated[SerializeAsAny[TaskBase], BeforeValidator(_as_task)]


# How a training set is sized and spread over its instructions (or a user table's groups):
# the checks and the total that the built-in DataConfig and grouped.GroupedDataConfig share.


def alpha_iff_powerlaw(cls, value: float | None, info: ValidationInfo) -> float | None:
    if (value is None) == (info.data.get("distribution") == "powerlaw"):
        raise ValueError("alpha is required for distribution 'powerlaw' and only for it")
    return value


def one_size(cls, value: int | None, info: ValidationInfo) -> int | None:
    """`budget`: exactly one of it and examples_per_instruction, and an example per
    instruction at least when spread uniformly."""
    if (value is None) == (info.data.get("examples_per_instruction") is None):
        raise ValueError("give exactly one of examples_per_instruction and budget")
    n = info.data.get("n_instructions")
    if value is not None and n and info.data.get("distribution") == "uniform" and value < n:
        raise ValueError(f"must be >= n_instructions ({n}) for a uniform distribution")
    return value


def total_examples(cfg: Any) -> int:
    if cfg.budget is not None:
        return cfg.budget
    return cfg.n_instructions * cfg.examples_per_instruction


class DataConfig(FrozenConfig):
    """One training set: `n_instructions` rules, and either examples per rule or a total budget.

    `rules: resampled` (default) draws the rules from the training pool in an order fixed by
    the rule seed (default: the data seed), so seeds differ in which instructions they train
    on; `rules: prefix` takes them in the task's one universe order, the same for every seed.
    Either way the rules of a set with I instructions are contained in every set with more for
    the same rule seed (nested across I), and none is in the held-out pool.
    """

    _root: ClassVar[str] = "data"

    # Cross-field checks are field validators (they see the fields declared above them in
    # `info.data`), so each error names the field to fix, also when nested in a sweep spec.
    task: Task = TaskConfig()
    n_instructions: int = Field(ge=1)
    distribution: Literal["uniform", "powerlaw"] = "uniform"
    alpha: float | None = Field(
        None, gt=0, validate_default=True, description="power-law exponent, numpy power(alpha)"
    )
    examples_per_instruction: int | None = Field(None, ge=1)
    budget: int | None = Field(
        None, ge=1, validate_default=True, description="total examples, split across rules"
    )
    seed: int = 0
    rules: Literal["resampled", "prefix"] = "resampled"
    rule_seed: int | None = Field(
        None, ge=0, validate_default=True, description="order of the rules drawn; None: seed"
    )

    @field_validator("rule_seed")
    @classmethod
    def _rule_seed_iff_resampled(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("rules") == "prefix":
            raise ValueError("rules: prefix takes the universe order, which has no rule seed")
        return value

    @field_validator("n_instructions")
    @classmethod
    def _fits_universe(cls, value: int, info: ValidationInfo) -> int:
        task = info.data.get("task")
        if task is None:
            return value
        # imported here: the families import this module for its config types
        from divsweep.datasets.families import resolve

        problem = resolve(task.family).too_many(task, value)
        if problem:
            raise ValueError(problem)
        return value

    _alpha_iff_powerlaw = field_validator("alpha")(alpha_iff_powerlaw)
    _one_size = field_validator("budget")(one_size)

    @property
    def rule_order_seed(self) -> int | None:
        """The seed that orders this set's rules; None for the fixed universe prefix."""
        if self.rules == "prefix":
            return None
        return self.seed if self.rule_seed is None else self.rule_seed

    @property
    def total_examples(self) -> int:
        return total_examples(self)


class EvalConfig(FrozenConfig):
    """Eval set sizes. `seen`: new inputs for the training rules; `unseen`: the held-out test
    rules (what reports headline); `unseen_val`: other held-out rules, the validation split
    that selection (schedulers, searches) reads, so the test rules never steer a sweep.

    Paper: 10^5 test examples of unseen rules (1000 rules x 100 inputs, the defaults).
    """

    _root: ClassVar[str] = "eval"

    seen_examples: int = Field(10_000, ge=1)
    unseen_instructions: int = Field(1000, ge=1)
    unseen_examples_per_instruction: int = Field(100, ge=1)
    # paper silent (it selects nothing); taken from the end of the held-out pool. None: what
    # the pool holds beyond the test rules, at most DEFAULT_VALIDATION (`validation_size`)
    validation_instructions: int | None = Field(None, ge=0)
    seed: int = 0


DEFAULT_VALIDATION = 100


def validation_size(task: TaskBase, eval_cfg: EvalConfig) -> int:
    """How many held-out rules are validation rules (eval.validation_instructions resolved)."""
    if eval_cfg.validation_instructions is not None:
        return eval_cfg.validation_instructions
    return max(0, min(DEFAULT_VALIDATION, task.n_unseen - eval_cfg.unseen_instructions))


def check_eval_fits(task: TaskBase, eval_cfg: EvalConfig) -> None:
    """The test and validation rules are disjoint parts of the task's held-out pool."""
    if eval_cfg.unseen_instructions > task.n_unseen:
        raise SpecError(
            f"eval.unseen_instructions: must be <= task.n_unseen ({task.n_unseen}), "
            f"got {eval_cfg.unseen_instructions}"
        )
    room = task.n_unseen - eval_cfg.unseen_instructions
    if validation_size(task, eval_cfg) > room:
        raise SpecError(
            f"eval.validation_instructions: must be <= task.n_unseen - eval.unseen_instructions "
            f"({room}), got {eval_cfg.validation_instructions}"
        )
