"""Family `semantic`: Only-IF's rules with constrained semantics (arXiv 2410.04717, §2.3.4).

A rule x -> y takes x and y from one *semantic family* at one constraint level k: each is built
from a base string b of length |x| / k,

    repeated  aaabbbccc   every letter of b written k times       (b = abc, k = 3)
    periodic  abcabc      b written k times                       (b = abc, k = 2)
    mirrored  abccbaabc   k blocks b, reversed b, b, ...          (b = abc, k = 3)

so a larger k is a more constrained rule. Training rules come from `train_families` at every k
of `train_k` that divides |x|; the held-out pool from `test_families` at `test_k` (the paper
tests on k < 3). A held-out x or y that also has a training family's structure at a training k
(possible on short patterns) is redrawn, so held-out rules are truly outside the training
families' constraint levels. Examples are the rewrite family's (`rewrite.examples`): x planted
in a uniform random input, its leftmost occurrence replaced once. `semantic_reference` is the
independent reference the tests compare this with.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from divsweep.datasets.config import LengthRange, Range, TaskBase
from divsweep.datasets.rewrite import Rule, letters
from divsweep.errors import SpecError

SemanticFamily = Literal["repeated", "periodic", "mirrored"]
SEMANTIC_FAMILIES: tuple[SemanticFamily, ...] = ("repeated", "periodic", "mirrored")
Families = Annotated[tuple[SemanticFamily, ...], Field(min_length=1)]

# A held-out draw that keeps having training structure this many times in a row means the
# test settings cannot avoid it (e.g. test_k 6 with train_k 3: every k = 6 string is k = 3).
_MAX_REJECTIONS = 10_000


def divisors(n: int, k_range: LengthRange) -> list[int]:
    """The constraint levels of a range that a pattern of length n can have (k divides n)."""
    return [k for k in range(k_range[0], k_range[1] + 1) if n % k == 0]


class SemanticTask(TaskBase):
    """Family `semantic`. Defaults are Only-IF's semantic experiment: |x| = |y| = 60, inputs of
    500 letters, all three families trained at k in 3-60, tested on k < 3."""

    family: Literal["semantic"] = "semantic"
    alphabet_size: int = Field(26, ge=2, le=26, description="first N lowercase letters")
    pattern_length: int = Field(60, ge=1, description="|x| = |y|; Only-IF App. B.2: 60")
    input_length: Range = Field(
        (500, 500), validate_default=True, description="|z| range; Only-IF App. B.2: 500"
    )
    train_families: Families = Field(SEMANTIC_FAMILIES, description="one family or a mix")
    train_k: Range = Field((3, 60), validate_default=True, description="Fig. 4: 3-4 … 3-60")
    test_families: Families = Field(SEMANTIC_FAMILIES, description="families of held-out rules")
    test_k: Range = Field((1, 2), validate_default=True, description="paper: k < 3")
    p_pattern_present: float = Field(1.0, ge=0.0, le=1.0, description="1 - the no-op ratio")

    @property
    def mode(self) -> str:
        """Read by `rewrite.examples`: the paper's single leftmost replacement."""
        return "leftmost"

    @field_validator("train_families", "test_families")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("name each family once")
        return value

    @field_validator("input_length")
    @classmethod
    def _pattern_fits(cls, value: LengthRange, info: ValidationInfo) -> LengthRange:
        pattern = info.data.get("pattern_length")
        if pattern and pattern > value[0]:
            raise ValueError(f"min must be >= pattern_length ({pattern}) so x fits in z")
        return value

    @field_validator("train_k", "test_k")
    @classmethod
    def _some_k_divides(cls, value: LengthRange, info: ValidationInfo) -> LengthRange:
        length = info.data.get("pattern_length")
        if length and not divisors(length, value):
            raise ValueError(f"no k in {list(value)} divides pattern_length ({length})")
        return value

    @field_validator("test_k")
    @classmethod
    def _held_out(cls, value: LengthRange, info: ValidationInfo) -> LengthRange:
        length, train_k = info.data.get("pattern_length"), info.data.get("train_k")
        train, test = info.data.get("train_families"), info.data.get("test_families")
        if length and train_k and train and test:
            shared = set(divisors(length, value)) & set(divisors(length, train_k))
            if shared and set(train) & set(test):
                raise ValueError(
                    f"k {sorted(shared)} of {sorted(set(train) & set(test))} is also trained on"
                )
        return value

    @model_validator(mode="after")
    def _pool_holds_n_unseen(self) -> SemanticTask:
        size = pool_size(self, self.test_families, self.test_k)
        if self.n_unseen > size:
            raise ValueError(f"n_unseen ({self.n_unseen}) exceeds the {size} held-out rules")
        return self


def construct(family: str, base: str, k: int) -> str:
    """The family's string of constraint level k over `base`."""
    if family == "repeated":
        return "".join(c * k for c in base)
    if family == "periodic":
        return base * k
    return "".join(base if i % 2 == 0 else base[::-1] for i in range(k))


def _has_structure(s: str, families: tuple[str, ...], ks: list[int]) -> bool:
    """Whether s is one of these families' strings at one of these k."""
    for k in ks:
        for family in families:
            base = s[::k] if family == "repeated" else s[: len(s) // k]
            if construct(family, base, k) == s:
                return True
    return False


def pool_size(task: SemanticTask, families: tuple[str, ...], k_range: LengthRange) -> int:
    """Rules x != y over (family, k) pairs: an upper bound, since a string can belong to two
    pairs (repeated at k = 6 is also repeated at k = 3); `rules` says if it falls short."""
    ks = divisors(task.pattern_length, k_range)
    bases = [task.alphabet_size ** (task.pattern_length // k) for k in ks]
    return len(families) * sum(n * (n - 1) for n in bases)


def too_many(task: SemanticTask, n: int) -> str | None:
    size = pool_size(task, task.train_families, task.train_k)
    if n > size:
        return (
            f"exceeds the {size} training rules of {list(task.train_families)} at k in "
            f"{divisors(task.pattern_length, task.train_k)} (|x| = {task.pattern_length})"
        )
    return None


def _stream(
    task: SemanticTask, families: tuple[str, ...], k_range: LengthRange, rng: np.random.Generator
) -> Iterator[Rule]:
    """Rules of the given families and levels: each draw picks a (family, k) uniformly among
    those with rules left, then two distinct uniform bases. Each pair is drawn once; the stream
    ends when every pair is exhausted."""
    a, length = task.alphabet_size, task.pattern_length
    levels = [(f, k) for f in families for k in divisors(length, k_range)]
    drawn: dict[tuple[str, int], set[tuple[str, str]]] = {level: set() for level in levels}
    live = list(levels)
    while live:
        family, k = level = live[int(rng.integers(len(live)))]
        m = length // k
        if len(drawn[level]) == a**m * (a**m - 1):
            live.remove(level)
            continue
        text = letters(rng.integers(0, a, 2 * m))
        bases = (text[:m], text[m:])
        if bases[0] == bases[1] or bases in drawn[level]:
            continue
        drawn[level].add(bases)
        yield construct(family, bases[0], k), construct(family, bases[1], k)


@lru_cache(maxsize=16)
def rules(task: SemanticTask, n: int) -> tuple[Rule, ...]:
    """The first n rules: the n_unseen held-out ones, then training rules (prefix-stable).

    Held-out and training rules come from separate seeded streams, so the training order does
    not depend on n_unseen. A held-out x or y with training structure is redrawn.
    """
    held_out = _stream(task, task.test_families, task.test_k, _rng(task, 1))
    training = _stream(task, task.train_families, task.train_k, _rng(task, 2))
    train_ks = divisors(task.pattern_length, task.train_k)
    out: list[Rule] = []
    seen: set[Rule] = set()
    rejected = 0
    while len(out) < n:
        unseen = len(out) < task.n_unseen
        rule = next(held_out if unseen else training, None)
        if rule is None and unseen:
            raise SpecError(
                f"task.n_unseen: only {len(out)} held-out rules exist without a training "
                "family's structure at a training k"
            )
        if rule is None:
            raise SpecError(
                f"data.n_instructions: the task has only {len(out) - task.n_unseen} distinct "
                "training rules"
            )
        if unseen and any(_has_structure(s, task.train_families, train_ks) for s in rule):
            rejected += 1
            if rejected == _MAX_REJECTIONS:
                raise SpecError(
                    "task.test_k: held-out rules keep having a training family's structure at "
                    "a training k; choose test_k or test_families further from the training ones"
                )
            continue
        rejected = 0
        if rule not in seen:
            seen.add(rule)
            out.append(rule)
    return tuple(out)


def _rng(task: SemanticTask, stream: int) -> np.random.Generator:
    return np.random.default_rng([task.universe_seed, 0x5E3A, stream])
