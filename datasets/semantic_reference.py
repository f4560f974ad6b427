"""Reference semantics of family `semantic`: written to be obviously right, not fast.

Each family is stated as what every position of the string must hold, independently of how
`semantic.construct` builds it; tests compare the generator with these on random cases. (The
rewrite itself is `rewrite.apply_rule`, tested against its own reference.)
"""

from __future__ import annotations


def _block(s: str, k: int) -> int:
    return len(s) // k


def position_rule(family: str, base: str, k: int, i: int) -> str:
    """The letter at position i of the family's string of level k over base."""
    m = len(base)
    if family == "repeated":
        return base[i // k]  # k copies of each letter in turn
    if family == "periodic":
        return base[i % m]  # the base again and again
    block, j = divmod(i, m)
    return base[j] if block % 2 == 0 else base[m - 1 - j]  # even blocks forward, odd reversed


def build(family: str, base: str, k: int) -> str:
    return "".join(position_rule(family, base, k, i) for i in range(len(base) * k))


def is_member(s: str, family: str, k: int) -> bool:
    """Whether s is the family's string of level k over some base."""
    if len(s) % k != 0:
        return False
    m = _block(s, k)
    base = s[::k] if family == "repeated" else s[:m]
    return all(s[i] == position_rule(family, base, k, i) for i in range(len(s)))


def structures(s: str, families: tuple[str, ...], ks: list[int]) -> set[tuple[str, int]]:
    """Every (family, k) among these that s belongs to."""
    return {(f, k) for f in families for k in ks if is_member(s, f, k)}
