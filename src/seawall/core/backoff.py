"""Delay schedules for retries, and the parsing of a downstream's ``Retry-After``.

A :class:`Backoff` is an immutable description of a schedule; each logical call
that needs to wait asks it for a fresh, infinite iterator of delays with
:meth:`Backoff.delays`, so one schedule is shared by every caller while the
per-call state (the attempt number, decorrelated jitter's previous delay) lives
in the iterator. Nothing here sleeps: drivers decide how to wait.

Schedules, for the ``n``-th delay (``n`` from 0)::

    constant      delay
    linear        min(initial + n * step, maximum)
    exponential   min(initial * multiplier ** n, maximum), then jittered:
        None           that value exactly
        "full"         uniform in [0, value]                 (AWS "full jitter")
        "equal"        value / 2 + uniform in [0, value / 2]
        "decorrelated" min(maximum, uniform in [initial, previous * 3]), previous
                       starting at ``initial`` (AWS "decorrelated jitter")

Jitter spreads the retries of many clients that failed together, so they do not
come back together; "full" spreads them most and is the default.

:func:`parse_retry_after` and :func:`retry_after_of` read the delay a server
asks for, as delta-seconds or an HTTP date, from an exception or a response,
without importing any HTTP library. Anything malformed gives ``None``: a header
is a hint from a system that may itself be failing, never an order.

.. versionadded:: 0.1
"""

from __future__ import annotations

import email.utils
import math
import random as _random
import time
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Literal

from seawall import _validate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["JITTERS", "Backoff", "Jitter", "parse_retry_after", "retry_after_of"]

Jitter = Literal["full", "equal", "decorrelated"] | None
Kind = Literal["constant", "linear", "exponential"]

#: The accepted values of ``Backoff.exponential(jitter=...)``.
JITTERS: tuple[Jitter, ...] = ("full", "equal", "decorrelated", None)

# The upper bound of decorrelated jitter, as a multiple of the previous delay (AWS).
_DECORRELATED_GROWTH = 3.0

# Longer than any sane header value; a longer one is garbage, parsed no further.
_MAX_HEADER_LENGTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """An immutable delay schedule: :meth:`constant`, :meth:`linear` or :meth:`exponential`.

    Attributes:
        kind: ``"constant"``, ``"linear"`` or ``"exponential"``.
        initial: The first delay before jitter, in seconds.
        maximum: No delay is ever longer, in seconds. Retry also caps a
            server's ``Retry-After`` at this value.
        step: Seconds added per retry (linear only).
        multiplier: Growth factor per retry (exponential only), >= 1.
        jitter: ``"full"``, ``"equal"``, ``"decorrelated"`` or ``None``
            (exponential only; see the module docstring).

    Raises:
        ConfigError: A delay is negative or not finite, ``maximum < initial``,
            ``multiplier < 1``, or ``jitter`` is unknown; the message names each.

    .. versionadded:: 0.1
    """

    kind: Kind
    initial: float
    maximum: float
    step: float = 0.0
    multiplier: float = 1.0
    jitter: Jitter = None

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.kind not in ("constant", "linear", "exponential"):
            errors.append(f"kind must be constant, linear or exponential, got {self.kind!r}")
        field = "delay" if self.kind == "constant" else "initial"
        errors += _validate.duration(field, self.initial, allow_zero=self.kind != "exponential")
        errors += _validate.duration("maximum", self.maximum)
        errors += _validate.duration("step", self.step)
        if not errors and self.maximum < self.initial:
            errors.append(f"maximum must be >= initial ({self.initial!r}), got {self.maximum!r}")
        multiplier: object = self.multiplier
        if not _validate.is_number(multiplier) or not 1 <= multiplier < math.inf:  # type: ignore[operator]
            errors.append(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        if self.jitter not in JITTERS:
            errors.append(f"jitter must be one of {JITTERS!r}, got {self.jitter!r}")
        elif self.jitter is not None and self.kind != "exponential":
            errors.append(f"jitter applies to exponential backoff only, got {self.jitter!r}")
        _validate.fail_if(errors)

    @classmethod
    def constant(cls, delay: float) -> Backoff:
        """Wait ``delay`` seconds (>= 0) before every retry.

        Raises:
            ConfigError: ``delay`` is negative or not a finite number.
        """
        return cls(kind="constant", initial=delay, maximum=delay)

    @classmethod
    def linear(cls, initial: float, step: float, maximum: float) -> Backoff:
        """Wait ``initial``, then ``step`` seconds more before each retry, up to ``maximum``.

        Raises:
            ConfigError: A value is negative or not finite, or ``maximum < initial``.
        """
        return cls(kind="linear", initial=initial, step=step, maximum=maximum)

    @classmethod
    def exponential(
        cls,
        initial: float,
        maximum: float,
        multiplier: float = 2.0,
        jitter: Jitter = "full",
    ) -> Backoff:
        """Multiply the delay by ``multiplier`` before each retry, up to ``maximum``, with jitter.

        Args:
            initial: The first delay before jitter, in seconds (> 0).
            maximum: The cap, in seconds (>= ``initial``).
            multiplier: Growth per retry (>= 1). Default 2.
            jitter: ``"full"`` (default), ``"equal"``, ``"decorrelated"`` or ``None``.

        Raises:
            ConfigError: A value is out of range; the message names each one.
        """
        return cls(
            kind="exponential",
            initial=initial,
            maximum=maximum,
            multiplier=multiplier,
            jitter=jitter,
        )

    def delays(self, random: Callable[[], float] | None = None) -> Iterator[float]:
        """Return an infinite iterator of the delays of one logical call, in seconds.

        Every value is in ``[0, maximum]``. Start a new iterator for each call:
        the iterator holds the call's position in the schedule.

        Args:
            random: Jitter's source of floats in ``[0, 1)``; defaults to
                :func:`random.random`. Pass a seeded one for reproducible delays.
        """
        rand = _random.random if random is None else random
        if self.kind == "constant":
            return _repeat(self.initial)
        if self.kind == "linear":
            return _linear(self.initial, self.step, self.maximum)
        if self.jitter == "decorrelated":
            return _decorrelated(self.initial, self.maximum, rand)
        return _exponential(self.initial, self.maximum, self.multiplier, self.jitter, rand)

    def longest(self, retries: int) -> float:
        """Return the longest total time ``retries`` delays of one call can add up to.

        Jitter only ever shortens a delay, so the bound is the schedule with its
        jitter at the top of its range. A :class:`~seawall.Registry` adds this
        to attempts x timeout to check that a dependency fits in the request's
        deadline.
        """
        if retries <= 0:
            return 0.0
        # random() -> 1.0 is the top of every jitter's range (full, equal, and
        # decorrelated's uniform(initial, previous * 3)).
        delays = self.delays(random=lambda: 1.0)
        return float(sum(next(delays) for _ in range(retries)))


def _repeat(delay: float) -> Iterator[float]:
    while True:
        yield delay


def _linear(initial: float, step: float, maximum: float) -> Iterator[float]:
    n = 0
    while True:
        delay = initial + n * step
        if delay >= maximum:
            break
        yield delay
        n += 1
    yield from _repeat(maximum)


def _exponential(
    initial: float,
    maximum: float,
    multiplier: float,
    jitter: Jitter,
    rand: Callable[[], float],
) -> Iterator[float]:
    # Grow by repeated multiplication and stop growing at the cap: `initial *
    # multiplier ** n` would overflow a float after a thousand-odd retries.
    base = min(initial, maximum)
    while True:
        if jitter is None:
            yield base
        elif jitter == "full":
            yield base * rand()
        else:  # "equal": never less than half the schedule, so some spacing is kept
            half = base / 2
            yield half + half * rand()
        if base < maximum:
            base = min(base * multiplier, maximum)


def _decorrelated(initial: float, maximum: float, rand: Callable[[], float]) -> Iterator[float]:
    previous = initial
    while True:
        high = previous * _DECORRELATED_GROWTH
        previous = min(maximum, initial + (high - initial) * rand())
        yield previous


def parse_retry_after(value: object, *, now: Callable[[], float] = time.time) -> float | None:
    """Return the seconds a ``Retry-After`` value asks to wait, or ``None`` if it is not usable.

    Accepts a number of seconds (an ``int`` or ``float``, as an exception's
    ``retry_after`` attribute may carry), or header text: delta-seconds
    (``"120"``, leniently ``"1.5"``) or an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``). A date in the past means 0.

    Negative, non-finite and malformed values give ``None``. Very large values
    are returned as they are: the caller caps them (Retry caps them at its
    backoff's ``maximum``).

    Args:
        value: The attribute or header value (``str``, ``bytes`` or a number).
        now: Wall-clock time in seconds since the epoch, to resolve an HTTP
            date; defaults to :func:`time.time`.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
        return seconds if 0 <= seconds < math.inf else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    return _parse_text(value.strip(), now)


def _parse_text(text: str, now: Callable[[], float]) -> float | None:
    if not text or len(text) > _MAX_HEADER_LENGTH:
        return None
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about local time
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, when.timestamp() - now())
    except (OverflowError, OSError, ValueError):
        return None


def retry_after_of(obj: object, *, now: Callable[[], float] = time.time) -> float | None:
    """Return the delay an error or a response asks for, or ``None``.

    Looked up in order: a ``retry_after`` attribute (seconds, or header text);
    a ``Retry-After`` header in ``obj.headers``; then in ``obj.response.headers``
    (the shape of httpx's and requests' HTTP errors). Each value goes through
    :func:`parse_retry_after`. Never raises: an object whose attributes raise
    has no ``Retry-After``.
    """
    try:
        hinted = getattr(obj, "retry_after", None)
        if hinted is not None:
            seconds = parse_retry_after(hinted, now=now)
            if seconds is not None:
                return seconds
        for holder in (obj, getattr(obj, "response", None)):
            headers = getattr(holder, "headers", None)
            get = getattr(headers, "get", None)
            if get is None:
                continue
            # Mappings of httpx, requests and http.client are case-insensitive; a
            # plain dict is not, so try the two spellings servers actually send.
            header = get("Retry-After")
            if header is None:
                header = get("retry-after")
            if header is not None:
                return parse_retry_after(header, now=now)
    except Exception:
        return None
    return None
