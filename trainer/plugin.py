"""A class named by import path with its arguments, as LightningCLI configs write it:
`{class_path: mylab.models.TinyLM, init_args: {width: 64}}`.

The arguments are checked against the class's signature and type hints with jsonargparse (what
LightningCLI itself uses) when the spec is parsed, so a misspelt or mistyped field fails the
sweep before any work, naming the field.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from divsweep.config import FrozenConfig
from divsweep.errors import SpecError


class ClassSpec(FrozenConfig):
    """`class_path` (`package.module.Class`) and the keyword arguments it is built with."""

    _root: ClassVar[str] = "plugin"

    class_path: str = Field(min_length=1)
    init_args: dict[str, Any] = {}

    @field_validator("class_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        module, _, name = value.replace(":", ".").rpartition(".")
        if not module or not name:
            raise ValueError(f"expected package.module.Class, got {value!r}")
        return f"{module}.{name}"

    def __hash__(self) -> int:  # init_args is a dict: hash what it canonically is
        return hash((self.class_path, repr(sorted(self.init_args.items()))))


def load_class(class_path: str, base: type, where: str) -> type:
    """The class at `class_path`, which must subclass `base`; a SpecError at `where` if not."""
    module_name, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise SpecError(f"{where}.class_path: cannot import {class_path!r}: {err}") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise SpecError(
            f"{where}.class_path: {class_path} is not a {base.__module__}.{base.__name__}"
        )
    return found


def check_init_args(spec: ClassSpec, base: type, where: str, supplied: tuple[str, ...] = ()):
    """Check `spec.init_args` against the class's signature and type hints: unknown fields,
    values of the wrong type and missing required ones are one SpecError line at `where`.
    `supplied` names parameters divsweep passes itself (the datamodule's `data`), which the
    class must accept and the spec must not set."""
    cls = load_class(spec.class_path, base, where)
    parameters = inspect.signature(cls.__init__).parameters
    for name in supplied:
        if name in spec.init_args:
            raise SpecError(f"{where}.init_args.{name}: divsweep passes {name}; remove it")
        if name not in parameters:
            raise SpecError(
                f"{where}.class_path: {spec.class_path} takes no `{name}` argument, which "
                f"divsweep passes it (docs/own-model.md)"
            )
    _parse(spec, base, where, supplied)


def _parse(spec: ClassSpec, base: type, where: str, supplied: tuple[str, ...]):
    parser = _parser(spec.class_path, base, where, supplied)
    try:
        return parser.parse_object({"init_args": spec.init_args}).init_args
    except Exception as err:  # jsonargparse's ArgumentError (a message over several lines)
        raise SpecError(_located(str(err), spec, base, where, supplied)) from None


def _located(message: str, spec: ClassSpec, base: type, where: str, supplied: tuple) -> str:
    """jsonargparse's message as one line naming the field: `model.init_args.width: ...`."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    if found := re.search(r'Parser key "init_args\.([\w.]+)":\s*(.*)', text):
        return f"{where}.init_args.{found[1]}: {found[2]}"
    if found := re.search(r"does not accept option '([\w.]+)'", text):
        known = inspect.signature(load_class(spec.class_path, base, where).__init__).parameters
        takes = ", ".join(p for p in known if p not in ("self", *supplied))
        what = f"{spec.class_path} takes no such argument (it takes {takes})"
        return f"{where}.init_args.{found[1]}: {what}"
    return f"{where}.init_args: {text}"


@functools.lru_cache(maxsize=64)
def _parser(class_path: str, base: type, where: str, supplied: tuple[str, ...]):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(load_class(class_path, base, where), "init_args", skip=set(supplied))
    return parser


def instantiate(spec: ClassSpec, base: type, where: str, **supplied: Any) -> Any:
    """The class built with its checked init_args (jsonargparse's values: `"1e-3"` for a float
    field is the float) plus what divsweep supplies."""
    namespace = _parse(spec, base, where, tuple(sorted(supplied)))
    cls = load_class(spec.class_path, base, where)
    return cls(**namespace.as_dict(), **supplied)
