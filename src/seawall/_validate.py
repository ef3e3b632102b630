"""Shared checks for configuration objects.

Each check returns a list of messages (empty when the value is fine), so a
config's ``__post_init__`` can collect every bad field and raise one
:class:`~seawall.errors.ConfigError` naming them all.
"""

from __future__ import annotations

import inspect
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from seawall.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "at_least",
    "boolean",
    "duration",
    "fail_if",
    "in_range",
    "integer_in",
    "is_number",
    "refuse_generators",
    "seconds",
]


def is_number(value: object) -> bool:
    """Return whether ``value`` is a real number (``bool`` is not one here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(value: float | timedelta) -> float:
    """Normalise a duration given as seconds or as a :class:`~datetime.timedelta`."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def in_range(
    field: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
) -> list[str]:
    """Check ``low <= value <= high`` (``low < value`` with ``low_open``)."""
    bracket = "(" if low_open else "["
    message = f"{field} must be in {bracket}{low}, {high}], got {value!r}"
    if not is_number(value) or math.isnan(value):  # type: ignore[arg-type]
        return [message]
    number = float(value)  # type: ignore[arg-type]
    too_low = number <= low if low_open else number < low
    return [message] if too_low or number > high else []


def at_least(field: str, value: object, low: int) -> list[str]:
    """Check that ``value`` is an ``int`` and ``value >= low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        return [f"{field} must be an integer >= {low}, got {value!r}"]
    return []


def integer_in(field: str, value: object, low: int, high: int) -> list[str]:
    """Check that ``value`` is an ``int`` (not a ``bool``) and ``low <= value <= high``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        return [f"{field} must be an integer in [{low}, {high}], got {_short(value)}"]
    return []


def boolean(field: str, value: object) -> list[str]:
    """Check that ``value`` is ``True`` or ``False`` (``"yes"`` and ``1`` are not)."""
    if not isinstance(value, bool):
        return [f"{field} must be true or false, got {_short(value)}"]
    return []


_SHORT = 60  # characters of a bad value a message repeats


def _short(value: object) -> str:
    """``repr(value)``, cut short: a message must not repeat a huge input."""
    text = repr(value)
    return text if len(text) <= _SHORT else f"{text[: _SHORT - 3]}..."


def duration(field: str, value: object, *, allow_zero: bool = True) -> list[str]:
    """Check that ``value`` is a finite number of seconds, >= 0 (> 0 without ``allow_zero``)."""
    ok = is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
    if ok:
        ok = value >= 0 if allow_zero else value > 0  # type: ignore[operator]
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        return [f"{field} must be a finite number of seconds {bound}, got {value!r}"]
    return []


def fail_if(errors: list[str]) -> None:
    """Raise one :class:`ConfigError` listing every message, if there are any."""
    if errors:
        raise ConfigError("; ".join(errors))


def refuse_generators(fn: Callable[..., Any], policy: str) -> None:
    """Refuse to decorate a generator or async generator function with ``policy``.

    Calling a generator function only creates the generator: its body runs
    later, as it is iterated, after the decorated call has returned. A policy
    wrapped around the call would count every call a success and see none of
    the errors raised inside, silently. A clear error at decoration is the
    only honest answer.

    Raises:
        TypeError: ``fn`` is a generator or an async generator function.
    """
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
        name = getattr(fn, "__qualname__", repr(fn))
        msg = (
            f"{policy} cannot protect {kind} function ({name}): its body runs as it is "
            "iterated, after the decorated call has returned, so its errors would escape "
            "the policy. Decorate a function that consumes it (returns list(...)) instead."
        )
        raise TypeError(msg)
