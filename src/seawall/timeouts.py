"""Timeouts and deadlines that propagate: ``timeout()``, ``deadline()``, ``remaining()``.

A *deadline* is the moment by which a whole piece of work must be done, kept as
an absolute :func:`time.monotonic` reading in a :class:`~contextvars.ContextVar`.
Because it lives in the context, it follows the work across ``await``,
:func:`asyncio.create_task` and :func:`asyncio.gather` (each task starts with a
copy of its creator's context), and every policy below can see how much time is
left with :func:`remaining` without being handed it::

    async with seawall.deadline(2.0):          # the whole request: 2 s
        async with seawall.timeout(0.5, name="payment"):
            await pay()                        # at most 0.5 s, and never past the 2 s
        await asyncio.gather(reserve(), notify())   # both inherit what is left

Scopes only ever shorten the time left: a scope inside another uses the
earlier of its own end and the ambient deadline. When an async scope runs out,
the task is cancelled (by :func:`asyncio.timeout`) and the scope raises
:class:`~seawall.errors.DeadlineExceeded`, which is also a :class:`TimeoutError`.
A cancellation that comes from outside (the task was cancelled by someone else)
stays a :class:`asyncio.CancelledError`: a scope converts only its own expiry.

Sync code cannot be interrupted safely: Python has no way to stop a thread in
the middle of a blocking call without risking the state it holds (a lock, half
a write). So ``with deadline(...)`` in sync code only *sets* the budget; it is
up to the blocking call to honour it. Pass :func:`remaining` to the client's
own timeout::

    with seawall.deadline(2.0):
        left = seawall.remaining()             # seconds, 0.0 once it has passed
        requests.get(url, timeout=left)        # the client enforces it

Retry reads the ambient deadline too, and gives up instead of sleeping past it.
Threads do not inherit the context: run work in a thread with
:func:`asyncio.to_thread` or :meth:`contextvars.Context.run` to carry the
deadline along.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import math
import time
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Self

from seawall import _validate
from seawall.errors import DeadlineExceeded
from seawall.events import LISTENERS, Listeners, TimedOut

if TYPE_CHECKING:
    from contextvars import Token
    from types import TracebackType

__all__ = ["Deadline", "Timeout", "current_deadline", "deadline", "remaining", "timeout"]

_monotonic = time.monotonic
_AsyncioTimeout = asyncio.Timeout

#: The ambient deadline: an absolute ``time.monotonic()`` reading, or ``None``.
_DEADLINE: ContextVar[float | None] = ContextVar("seawall.deadline", default=None)
_get_deadline = _DEADLINE.get


def current_deadline() -> float | None:
    """Return the ambient deadline as an absolute :func:`time.monotonic` reading, or ``None``.

    For code that must compare the deadline with its own clock readings or send
    it along (an HTTP header); most code wants :func:`remaining`.
    """
    return _get_deadline()


def remaining() -> float | None:
    """Return the seconds left before the ambient deadline, or ``None`` when there is none.

    Never negative: ``0.0`` means the deadline has passed. This is how sync code
    hands its budget to a client's own timeout (see the module docstring).
    """
    when = _get_deadline()
    if when is None:
        return None
    left = when - _monotonic()
    return max(0.0, left)


def open_scope(seconds: float | None) -> tuple[float, float, Token[float | None] | None] | None:
    """Start a timeout scope of ``seconds`` inside the ambient deadline (for composing code).

    Returns ``None`` when there is nothing to enforce (no budget, no ambient
    deadline); otherwise ``(when, budget, token)``: the absolute end to give
    :class:`asyncio.Timeout`, the seconds it allows, and the token to hand to
    :func:`close_scope` (``None`` when the ambient deadline already binds and
    was left as it is). :class:`Timeout` is this plus two coroutine frames; a
    pipeline that runs on every call uses these directly.
    """
    ambient = _get_deadline()
    if seconds is None:
        if ambient is None:
            return None
        return ambient, ambient - _monotonic(), None
    now = _monotonic()
    when = now + seconds
    if ambient is not None and ambient <= when:
        return ambient, ambient - now, None
    return when, seconds, _DEADLINE.set(when)


def close_scope(token: Token[float | None] | None) -> None:
    """End a scope started by :func:`open_scope`, restoring the ambient deadline."""
    if token is not None:
        _DEADLINE.reset(token)


def expired(
    name: str | None, budget: float, listeners: Listeners | None, kind: str = "timeout"
) -> DeadlineExceeded:
    """Report that a scope of ``budget`` seconds ran out: emit TimedOut, return the error."""
    chosen = LISTENERS if listeners is None else listeners
    if chosen:
        chosen.emit(TimedOut(name=kind if name is None else name, at=_monotonic(), timeout=budget))
    return DeadlineExceeded(name=name, timeout=budget)


def _seconds(field: str, value: object, *, allow_none: bool) -> float | None:
    """Normalise a budget: seconds or a timedelta, finite and >= 0 (or ``None`` if allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    _validate.fail_if(_validate.duration(field, value))
    return float(value)  # type: ignore[arg-type]


class Timeout:
    """An async scope that ends its body after some seconds; made by :func:`timeout`.

    Use it with ``async with``. It sets the ambient deadline to the earlier of
    its own end and the one already in force, so nested scopes and retries see
    the tighter budget. Reusable, one ``async with`` at a time.

    .. versionadded:: 0.1
    """

    __slots__ = ("_budget", "_cm", "_listeners", "_token", "name", "seconds")

    # Set on entry, not here: a scope is built on every call, so it does no
    # more work than it must before the body runs.
    _budget: float
    _cm: asyncio.Timeout | None
    _token: Token[float | None] | None

    def __init__(
        self,
        seconds: float | timedelta | None,
        name: str | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        # Scopes are built on every call: the common case (a plain number) skips
        # the general checks, which still reject NaN, negatives and infinities.
        if (seconds.__class__ is float or seconds.__class__ is int) and (0 <= seconds < math.inf):
            self.seconds: float | None = seconds
        else:
            self.seconds = _seconds("seconds", seconds, allow_none=True)
        #: What is limited (a dependency or operation), used in errors and events.
        self.name = name
        self._listeners = listeners

    async def __aenter__(self) -> Self:
        scope = open_scope(self.seconds)
        if scope is None:
            self._cm = None
            self._token = None
            return self
        when, self._budget, token = scope
        self._token = token
        # The deadline goes to asyncio as it is: asyncio's loops keep time with
        # time.monotonic() (uvloop with the same clock, in milliseconds). Asking
        # the loop for its time instead costs a getpid() system call per scope.
        cm = self._cm = _AsyncioTimeout(when)
        try:
            await cm.__aenter__()
        except BaseException:
            close_scope(token)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            _DEADLINE.reset(token)
        cm = self._cm
        if cm is None:
            return
        self._cm = None
        try:
            await cm.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            # asyncio raises TimeoutError only when *its* timer cancelled the
            # task and no other cancellation is pending; anything else (an outer
            # cancel) has already passed through as CancelledError.
            if not cm.expired():  # pragma: no cover - asyncio's own invariant
                raise
            raise self._expired() from exc

    def _expired(self) -> DeadlineExceeded:
        return expired(self.name, self._budget, self._listeners, self._default_name())

    def _default_name(self) -> str:
        return "timeout"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} seconds={self.seconds!r}>"


class Deadline(Timeout):
    """A scope that sets the ambient deadline, sync or async; made by :func:`deadline`.

    ``async with`` enforces it (like :class:`Timeout`); plain ``with`` only sets
    it, since sync code cannot be interrupted safely: pass :func:`remaining` to
    your client's own timeout.

    .. versionadded:: 0.1
    """

    __slots__ = ()

    def __enter__(self) -> Self:
        when = _monotonic() + self.seconds  # type: ignore[operator]
        ambient = _get_deadline()
        if ambient is not None and ambient < when:
            when = ambient
        self._token = _DEADLINE.set(when)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            _DEADLINE.reset(token)

    def _default_name(self) -> str:
        return "deadline"


def timeout(
    seconds: float | timedelta | None,
    name: str | None = None,
    *,
    listeners: Listeners | None = None,
) -> Timeout:
    """Limit an async block to ``seconds``, and to the ambient deadline if that is sooner.

    ::

        async with seawall.timeout(0.5, name="payment"):
            await client.charge(order)

    Built on :func:`asyncio.timeout`: on expiry the block's task is cancelled at
    its current ``await`` and the scope raises
    :class:`~seawall.errors.DeadlineExceeded` (a :class:`TimeoutError`) naming
    ``name``, and emits :class:`~seawall.events.TimedOut`. A cancellation from
    outside stays a :class:`asyncio.CancelledError`. Inside the block,
    :func:`remaining` reports the tighter budget. Async only; for sync code see
    :func:`deadline`.

    Args:
        seconds: The budget, in seconds or as a timedelta (>= 0); ``None``
            enforces only the ambient deadline.
        name: What is limited, for the error and the event.
        listeners: Where the :class:`~seawall.events.TimedOut` event goes;
            defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: ``seconds`` is negative, not finite, or not a number.

    .. versionadded:: 0.1
    """
    return Timeout(seconds, name, listeners)


def deadline(
    seconds: float | timedelta,
    *,
    name: str | None = None,
    listeners: Listeners | None = None,
) -> Deadline:
    """Set the ambient deadline ``seconds`` from now (never later than the one in force).

    ``async with deadline(s):`` also enforces it, like :func:`timeout`; in sync
    code ``with deadline(s):`` sets it for :func:`remaining`, Retry and any
    client that reads it (see the module docstring: sync code cannot be
    interrupted safely). Deadlines nest and only shorten.

    Args:
        seconds: The budget, in seconds or as a timedelta (>= 0).
        name: A name for the error and event when it runs out (async only).
        listeners: Where the :class:`~seawall.events.TimedOut` event goes;
            defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: ``seconds`` is negative, not finite, or not a number.

    .. versionadded:: 0.1
    """
    value: object = seconds  # typed, but callers may not be
    if value is None:
        _validate.fail_if(["seconds must be a finite number of seconds >= 0, got None"])
    return Deadline(seconds, name, listeners)
