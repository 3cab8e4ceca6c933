"""Option values and their checks: the bottom layer of pyro-vae's configuration.

A config key, a part's option (the keyword-only arguments of a registry entry) and a
command-line flag are all checked by one function, :func:`check_value`, against a type
annotation such as ``Annotated[int, Range(lo=1)]`` or ``Literal["epochs", "steps"]``. Errors
name the key, the bad value and what is allowed, in the words of :func:`describe`::

    model.latent_dim = 0 is not allowed: expected an integer >= 1

Nothing here knows the config sections or the registries, so parts import it freely.
"""

import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pyro_vae.core.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A numeric bound for an ``Annotated`` field: ``lo < x`` (``lo <= x`` when not open)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    #: single values left out of the range (a Rényi α of 1)
    excluded: tuple = ()

    def __contains__(self, x) -> bool:
        lo_ok = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok and x not in self.excluded

    def __str__(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_number(self.lo)}")
        if self.hi is not None and self.hi != math.inf:
            parts.append(f"{'<' if self.hi_open else '<='} {_number(self.hi)}")
        parts += [f"!= {_number(v)}" for v in self.excluded]
        return " and ".join(parts)


def _number(x: float) -> str:
    """An integer bound in full (4294967295, not 4.29497e+09); others as ``%g``."""
    return str(int(x)) if isinstance(x, int) else f"{x:g}"


PositiveInt = Annotated[int, Range(lo=1)]
PositiveFloat = Annotated[float, Range(lo=0, lo_open=True, hi=math.inf, hi_open=True)]
NonNegativeFloat = Annotated[float, Range(lo=0, hi=math.inf, hi_open=True)]


def describe(annotation, plural: bool = False) -> str:
    """A short human description of what an annotation allows ("a list of integers >= 1")."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, *meta = args
        ranges = [str(m) for m in meta if isinstance(m, Range)]
        return " ".join([describe(base, plural), *ranges])
    if origin is Literal:
        words = [show(a) for a in args]
        return words[0] if len(words) == 1 else "one of " + ", ".join(words)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a, plural) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0], plural=True)}" if args else "a list"
    if annotation is type(None):
        return "none"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}
    if plural:
        names = {bool: "true or false values", int: "integers", float: "numbers", str: "strings"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_value(key: str, value, annotation):
    """Return ``value`` converted to ``annotation`` (int -> float, list -> tuple) or raise
    :class:`~pyro_vae.core.errors.ConfigError` naming ``key``."""
    try:
        return _check(value, annotation)
    except _Mismatch:
        raise ConfigError(f"{key} = {show(value)} is not allowed: expected {describe(annotation)}") from None


def checkable(annotation) -> bool:
    """Whether :func:`check_value` can check values of ``annotation`` (a command-line flag can
    then set it); a tensor-valued argument, say, cannot."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation in (bool, int, float, str, type(None)) or origin is Literal:
        return True
    if origin is Annotated:
        return checkable(args[0])
    if origin in (typing.Union, types.UnionType, list, tuple):
        return all(checkable(a) for a in args)
    return False


def show(value) -> str:
    """A value as a config file would spell it (``true``, not ``True``), on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + " }"
    return repr(value)


def parse_value(raw):
    """Read a command-line word as a TOML value (number, bool, list, inline table), else as a string."""
    if not isinstance(raw, str):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def plain(value):
    """Tuples become lists, so that checked values compare equal to what TOML and JSON load
    (tables and lists are copies: a config's values are never shared with a caller's)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return [plain(v) for v in value] if isinstance(value, list | tuple) else value


class _Mismatch(Exception):
    pass


_SCALARS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _check(value, annotation):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Annotated:
        base, *meta = args
        value = _check(value, base)
        if not all(value in m for m in meta if isinstance(m, Range)):
            raise _Mismatch
        return value
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return tuple(_check(v, args[0]) for v in value) if args else tuple(value)
    if annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    if annotation is dict:
        if isinstance(value, dict):
            return value
        raise _Mismatch
    if annotation in _SCALARS:
        if _SCALARS[annotation](value):
            return float(value) if annotation is float else value
        raise _Mismatch
    raise TypeError(f"pyro-vae cannot check values of type {annotation!r}")
