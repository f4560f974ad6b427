"""Character-level vocabulary shared by the generator, the trainer and the CLI.

Ids fit in uint8 so token columns are stored as `list<uint8>` and handed to torch as-is.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

PAD, BOS, EOS = 0, 1, 2
RULE_SEP, INPUT_SEP, ANSWER_SEP = ">", "|", "="
ALPHABET = string.ascii_lowercase


@dataclass(frozen=True)
class Vocab:
    """Specials (PAD, BOS, EOS), then the prompt separators, then the 26 letters.

    The alphabet is always the full 26 letters, whatever the task's alphabet size, so one
    vocabulary (and one embedding table) serves every task config of a sweep.
    """

    specials: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")
    separators: tuple[str, ...] = (RULE_SEP, INPUT_SEP, ANSWER_SEP)
    letters: str = ALPHABET
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chars = [*self.separators, *self.letters]
        object.__setattr__(self, "_ids", {c: i + len(self.specials) for i, c in enumerate(chars)})

    @property
    def tokens(self) -> list[str]:
        return [*self.specials, *self.separators, *self.letters]

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Inverse of `encode`; stops at EOS and drops PAD/BOS, so model outputs decode cleanly."""
        tokens = self.tokens
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(self.specials):
                out.append(tokens[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "pad": PAD, "bos": BOS, "eos": EOS}


VOCAB = Vocab()


def encode(text: str) -> list[int]:
    return VOCAB.encode(text)


def decode(ids: Iterable[int]) -> str:
    return VOCAB.decode(ids)


def prompt_text(pattern: str, replacement: str, inp: str) -> str:
    """The prompt `x>y|z=`; the model continues with the output then EOS."""
    return f"{pattern}{RULE_SEP}{replacement}{INPUT_SEP}{inp}{ANSWER_SEP}"


def _byte_table() -> bytes:
    table = bytearray([255] * 256)
    for i, token in enumerate(VOCAB.tokens):
        if len(token) == 1:
            table[ord(token)] = i
    return bytes(table)


_TABLE = _byte_table()


def encode_batch(texts: list[str], eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """Encode many texts at once into (uint8 values, int32 offsets), optionally EOS-terminated.

    One bytes.translate over the joined text instead of a Python loop per character.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)) + int(eos)
    joined = ("\x00".join(texts) + "\x00") if eos and texts else "".join(texts)
    raw = joined.encode("ascii", errors="replace")
    values = np.frombuffer(raw.translate(_TABLE), dtype=np.uint8).copy()
    if eos:
        values[np.cumsum(lengths) - 1] = EOS
    if (values == 255).any():
        bad = raw[int(np.argmax(values == 255))]
        raise ValueError(f"character {chr(bad)!r} is not in the vocabulary")
    offsets = np.zeros(len(texts) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return values, offsets
