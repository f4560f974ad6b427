"""Family `rewrite`: the paper's string-rewriting task, its reference semantics and generator.

An instruction is a rule x -> y over the first `alphabet_size` lowercase letters; an example is
(rule, input z) -> output. `apply_rule` is the reference that tests and evaluation compare
against; the generator only plants or avoids x and then calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from divsweep.datasets.config import TaskConfig

Rule = tuple[str, str]

# Universes up to this many (x, y) index pairs are enumerated and permuted, so even a task
# that needs nearly every rule gets them without a coupon-collector tail; larger ones are
# sampled (a collision is then rare and simply skipped).
ENUMERATE_LIMIT = 1 << 22
_CHUNK = 8192
_A = ord("a")


def apply_rule(x: str, y: str, z: str, mode: str = "leftmost") -> str:
    """Paper semantics: replace the leftmost x in z by y, once; no x means z unchanged (no-op).

    mode "all" replaces every occurrence, left to right, without overlaps (str.replace).
    """
    if mode == "all":
        return z.replace(x, y)
    i = z.find(x)
    return z if i < 0 else z[:i] + y + z[i + len(x) :]


def _count(alphabet: int, lengths: tuple[int, int]) -> int:
    return sum(alphabet**n for n in range(lengths[0], lengths[1] + 1))


def universe_size(task: TaskConfig) -> int:
    """Number of distinct rules x -> y with x != y."""
    a = task.alphabet_size
    both = (max(task.pattern_length[0], task.replacement_length[0]),
            min(task.pattern_length[1], task.replacement_length[1]))  # fmt: skip
    same = _count(a, both) if both[0] <= both[1] else 0
    return _count(a, task.pattern_length) * _count(a, task.replacement_length) - same


def too_many(task: TaskConfig, n: int) -> str | None:
    size = universe_size(task)
    if n + task.n_unseen > size:
        return (
            f"n_instructions + task.n_unseen ({task.n_unseen}) exceeds the {size} distinct "
            "rules this task's alphabet and lengths allow"
        )
    return None


def letters(codes: np.ndarray) -> str:
    return (codes.astype(np.uint8) + _A).tobytes().decode("ascii")


def _nth_string(index: int, alphabet: int, lengths: tuple[int, int]) -> str:
    """The index-th string of the given lengths, ordered by length then lexicographically."""
    for n in range(lengths[0], lengths[1] + 1):
        if index < alphabet**n:
            digits = []
            for _ in range(n):
                index, d = divmod(index, alphabet)
                digits.append(d)
            return letters(np.array(digits[::-1]))
        index -= alphabet**n
    raise IndexError(index)


@lru_cache(maxsize=16)
def rules(task: TaskConfig, n: int) -> tuple[Rule, ...]:
    """The first n rules of the task's universe order (a fixed function of the task config).

    Rules [0, n_unseen) are the held-out unseen pool; the training order follows. Both the
    enumerate and the sample paths yield a prefix-stable stream, so asking for more rules
    never changes the ones already handed out.
    """
    rng = np.random.default_rng([task.universe_seed, 0x5EED])
    a = task.alphabet_size
    ny = _count(a, task.replacement_length)
    nxy = _count(a, task.pattern_length) * ny
    out: list[Rule] = []
    if nxy <= ENUMERATE_LIMIT:
        for index in rng.permutation(nxy):
            xi, yi = divmod(int(index), ny)
            x = _nth_string(xi, a, task.pattern_length)
            y = _nth_string(yi, a, task.replacement_length)
            if x != y:
                out.append((x, y))
                if len(out) == n:
                    break
        return tuple(out)
    seen: set[Rule] = set()
    while len(out) < n:
        xs = _random_strings(rng, a, task.pattern_length, _CHUNK)
        ys = _random_strings(rng, a, task.replacement_length, _CHUNK)
        for rule in zip(xs, ys, strict=True):
            if rule[0] != rule[1] and rule not in seen:
                seen.add(rule)
                out.append(rule)
                if len(out) == n:
                    break
    return tuple(out)


def _random_strings(
    rng: np.random.Generator, alphabet: int, lengths: tuple[int, int], n: int
) -> list[str]:
    sizes = rng.integers(lengths[0], lengths[1] + 1, n)
    text = letters(rng.integers(0, alphabet, int(sizes.sum())))
    ends = np.cumsum(sizes).tolist()
    return [text[e - s : e] for s, e in zip(sizes.tolist(), ends, strict=True)]


def _avoid(x: str, z: str, alphabet: int) -> str:
    """z with every occurrence of x broken, changing as few letters as a left-to-right pass can.

    An occurrence ending at j needs z[j] == x[-1]; swapping that letter for the next one in the
    alphabet breaks it and cannot complete another, so one pass always succeeds.
    """
    swap = chr(_A + (ord(x[-1]) - _A + 1) % alphabet)
    chars: list[str] = []
    for c in z:
        chars.append(c)
        if c == x[-1] and "".join(chars[-len(x) :]) == x:
            chars[-1] = swap
    return "".join(chars)


class InputSettings(Protocol):
    """What `examples` reads of a task: any family whose inputs are planted like rewrite's."""

    alphabet_size: int
    input_length: tuple[int, int]
    p_pattern_present: float
    mode: str


@dataclass
class Examples:
    """Column-wise examples (plain lists, ready for Arrow)."""

    pattern: list[str]
    replacement: list[str]
    input: list[str]
    output: list[str]
    applied: list[bool]


def examples(
    task: InputSettings, rule_list: list[Rule], which: np.ndarray, rng: np.random.Generator
) -> Examples:
    """One example per entry of `which` (indices into `rule_list`), with fresh random inputs.

    With probability p_pattern_present, x is planted at a uniform position of a uniform random
    input (other copies may occur by chance; `apply_rule` handles them); otherwise the input is
    random with every occurrence of x broken, so the example is a no-op.
    """
    n = len(which)
    lengths = rng.integers(task.input_length[0], task.input_length[1] + 1, n)
    present = (rng.random(n) < task.p_pattern_present).tolist()
    where = rng.random(n).tolist()
    text = letters(rng.integers(0, task.alphabet_size, int(lengths.sum())))
    out = Examples([], [], [], [], [])
    start = 0
    for i, length in enumerate(lengths.tolist()):
        x, y = rule_list[which[i]]
        z = text[start : start + length]
        start += length
        if present[i]:
            pos = int(where[i] * (length - len(x) + 1))
            z = z[:pos] + x + z[pos + len(x) :]
        elif x in z:
            z = _avoid(x, z, task.alphabet_size)
        out.pattern.append(x)
        out.replacement.append(y)
        out.input.append(z)
        out.output.append(apply_rule(x, y, z, task.mode))
        out.applied.append(present[i])
    return out
