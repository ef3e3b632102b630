"""Bulkheads: cap how many calls to one dependency run at once.

A slow dependency holds on to every caller that reaches it. Without a cap, a
few seconds of latency downstream fill the process with stuck calls until
nothing else can run. A bulkhead hands out at most ``max_concurrent`` permits;
a call over that waits up to ``max_wait`` seconds for one and is then refused
with :class:`~seawall.errors.BulkheadFullError`, without being attempted. It
never waits past the ambient deadline (:func:`seawall.deadline`, a
dependency's timeout): a permit that would come too late is no use.

* :class:`Bulkhead` is for coroutines on one asyncio event loop:
  ``async with bulkhead:``, ``@bulkhead`` on an ``async def``, or
  :meth:`Bulkhead.call_async`.
* :class:`ThreadBulkhead` is for threads: ``with bulkhead:``, ``@bulkhead`` on
  a plain function, or :meth:`ThreadBulkhead.call`.

Waiting callers are served first come, first served: a freed permit is handed
straight to the oldest waiter, so a newcomer never takes it ahead of the queue.
A permit comes back on every way out of the protected code (return, exception,
cancellation, timeout), and a waiter cancelled at the very moment a permit is
handed to it passes the permit on instead of running or keeping it.

Both classes also expose the permit itself (``acquire`` / ``try_acquire`` /
``release``) for code that composes policies, such as a dependency pipeline.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.errors import BulkheadFullError
from seawall.events import LISTENERS, BulkheadRejected, Listeners
from seawall.timeouts import remaining

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from datetime import timedelta
    from types import TracebackType

__all__ = ["DEFAULT_MAX_WAIT", "Bulkhead", "BulkheadConfig", "ThreadBulkhead"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_WAIT = 0.0
"""By default a full bulkhead refuses at once: waiting is what it protects against."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadConfig:
    """The validated, immutable configuration of a bulkhead.

    Both fields are documented on :class:`Bulkhead`. Building one with a bad
    value raises :class:`~seawall.errors.ConfigError` naming each bad field and
    its value.
    """

    max_concurrent: int
    max_wait: float = DEFAULT_MAX_WAIT

    def __post_init__(self) -> None:
        _validate.fail_if(
            [
                *_validate.at_least("max_concurrent", self.max_concurrent, 1),
                *_validate.duration("max_wait", self.max_wait),
            ]
        )


class _BulkheadBase:
    """What both bulkheads share: configuration, counters, and refusing a call."""

    __slots__ = (
        "__weakref__",
        "_in_use",
        "_listeners",
        "_max",
        "_max_wait",
        "_now",
        "config",
        "name",
    )

    def __init__(
        self,
        name: str,
        max_concurrent: int,
        max_wait: float | timedelta,
        clock: Clock | None,
        listeners: Listeners | None,
    ) -> None:
        errors = []
        if not isinstance(name, str) or not name:
            errors.append(f"name must be a non-empty string, got {name!r}")
        try:
            config = BulkheadConfig(
                max_concurrent=max_concurrent, max_wait=_validate.seconds(max_wait)
            )
        except ValueError as exc:  # report a bad name and bad numbers together
            errors.append(str(exc))
        _validate.fail_if(errors)
        #: The bulkhead's name, used in errors, events and metrics.
        self.name = name
        #: The validated configuration.
        self.config = config
        self._max = config.max_concurrent
        self._max_wait = config.max_wait
        self._in_use = 0
        self._now = (MONOTONIC if clock is None else clock).monotonic
        self._listeners = LISTENERS if listeners is None else listeners

    @property
    def max_concurrent(self) -> int:
        """How many permits there are in all."""
        return self._max

    @property
    def in_use(self) -> int:
        """How many permits are held (including any just handed to a waiter)."""
        return self._in_use

    @property
    def available(self) -> int:
        """How many permits are free: ``max_concurrent - in_use``."""
        return self._max - self._in_use

    def _reject(self, started: float | None) -> NoReturn:
        """Refuse a call that began waiting at ``started`` (``None``: it did not wait)."""
        # The clock is read only for listeners: a refusal is the hot path of an
        # overload, and nobody reads its timing unless an event carries it.
        if self._listeners:
            now = self._now()
            self._listeners.emit(
                BulkheadRejected(
                    name=self.name,
                    at=now,
                    max_concurrent=self._max,
                    waited=0.0 if started is None else now - started,
                )
            )
        raise BulkheadFullError(name=self.name, max_concurrent=self._max)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} in_use={self._in_use}/{self._max}>"


def _expire(waiter: asyncio.Future[bool]) -> None:
    # The max_wait timer: a waiter still without a permit gets "no" (False).
    if not waiter.done():
        waiter.set_result(False)


def _wait_limit(max_wait: float) -> float:
    """``max_wait``, cut to what is left of the ambient deadline."""
    left = remaining()
    return max_wait if left is None or left >= max_wait else left


class Bulkhead(_BulkheadBase):
    """At most ``max_concurrent`` coroutines at once inside; the rest wait or are refused.

    Use it as ``async with bulkhead:``, as a decorator on an ``async def``, or
    through :meth:`call_async`. It serves one event loop at a time and is not
    thread-safe: for threads use :class:`ThreadBulkhead`.

    Waiters queue in arrival order and a freed permit goes straight to the
    first of them. ``max_wait`` is measured in event-loop time (it cannot be
    driven by a fake clock); the injected ``clock`` only dates events.

    Args:
        name: The bulkhead's name, used in errors, events and metrics; usually
            the dependency's name.
        max_concurrent: How many calls may be inside at once; an integer >= 1.
        max_wait: Seconds (or a :class:`~datetime.timedelta`) a call waits for
            a permit when all are taken before it is refused. The default 0
            refuses at once.
        clock: Time source for events; defaults to the real monotonic clock.
        listeners: Where events go; defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: Some option is out of range; the message names each one.

    .. versionadded:: 0.1
    """

    __slots__ = ("_waiters",)

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_wait: float | timedelta = DEFAULT_MAX_WAIT,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        super().__init__(name, max_concurrent, max_wait, clock, listeners)
        # Pending futures of waiting coroutines, oldest first. Futures already
        # done (timed out, cancelled) may linger until skipped or removed.
        self._waiters: collections.deque[asyncio.Future[bool]] = collections.deque()

    @property
    def waiting(self) -> int:
        """How many coroutines are queued for a permit."""
        return sum(not w.done() for w in self._waiters)

    # -- the permit ----------------------------------------------------------
    #
    # Invariant: while a live waiter is queued, every permit is in use. A
    # release hands its permit to the first live waiter instead of freeing it,
    # so `in_use < max` alone proves nobody is queued, and the fast path is a
    # comparison and an increment: no future, no await, no barging.

    async def acquire(self) -> None:
        """Take a permit, waiting up to ``max_wait`` for one.

        Every successful ``acquire()`` must be matched by one :meth:`release`.

        Raises:
            BulkheadFullError: No permit came free within ``max_wait``.
            asyncio.CancelledError: The caller was cancelled while waiting;
                it holds no permit.
        """
        if self._in_use < self._max:
            self._in_use += 1
        else:
            await self._wait()

    # `async with` needs exactly what acquire() does; aliasing saves a frame.
    __aenter__ = acquire

    def try_acquire(self) -> bool:
        """Take a permit if one is free right now, without waiting.

        Unlike :meth:`acquire` it neither raises nor emits an event when the
        bulkhead is full: the caller decides what a refusal means.

        Returns:
            Whether a permit was taken (then it must be given back with
            :meth:`release`).
        """
        if self._in_use < self._max:
            self._in_use += 1
            return True
        return False

    def release(self) -> None:
        """Give back a permit taken with :meth:`acquire` or :meth:`try_acquire`.

        Raises:
            RuntimeError: No permit is held.
        """
        if self._in_use <= 0:
            msg = f"bulkhead {self.name!r}: release() without a permit held"
            raise RuntimeError(msg)
        if self._waiters:
            self._hand_off()
        else:
            self._in_use -= 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._waiters:
            self._hand_off()
        else:
            self._in_use -= 1

    async def _wait(self) -> None:
        """Queue for a permit; the slow half of :meth:`acquire`."""
        max_wait = _wait_limit(self._max_wait)
        if not max_wait:
            self._reject(None)
        started = self._now()
        loop = asyncio.get_running_loop()
        waiters = self._waiters
        while waiters and waiters[0].done():  # stale: their owners gave up
            waiters.popleft()
        if waiters and waiters[0].get_loop() is not loop:
            msg = f"bulkhead {self.name!r} has waiters on another event loop"
            raise RuntimeError(msg)
        # True: a permit was handed over; False: max_wait ran out first.
        waiter: asyncio.Future[bool] = loop.create_future()
        waiters.append(waiter)
        timer = loop.call_later(max_wait, _expire, waiter)
        try:
            granted = await waiter
        except BaseException:
            timer.cancel()
            if waiter.done() and not waiter.cancelled() and waiter.result():
                # The permit was handed over, then the task was cancelled before
                # it could run (3.11's wait_for would swallow this and run the
                # body). The caller will not run its code, so the permit goes to
                # the next waiter, or back to the pool.
                self._hand_off()
            else:
                waiter.cancel()  # pending only if the error came another way
                self._discard(waiter)
            raise
        timer.cancel()
        if not granted:
            self._discard(waiter)
            self._reject(started)

    def _hand_off(self) -> None:
        """Release one permit: to the first live waiter if any, else to the pool."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the permit changes hands; in_use stays
                return
        self._in_use -= 1

    def _discard(self, waiter: asyncio.Future[bool]) -> None:
        # It may already be gone: a hand-off pops the done futures it skips.
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    # -- calling through the bulkhead ----------------------------------------

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` holding a permit and return its result.

        Raises:
            BulkheadFullError: No permit came free within ``max_wait``; ``fn``
                was not called.
        """
        if self._in_use < self._max:
            self._in_use += 1
        else:
            await self._wait()
        try:
            return await fn(*args, **kwargs)
        finally:
            if self._waiters:
                self._hand_off()
            else:
                self._in_use -= 1

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Decorate an ``async def`` so every call holds a permit while it runs.

        Raises:
            TypeError: ``fn`` is not a coroutine function (a thread bulkhead is
                :class:`ThreadBulkhead`).
        """
        _validate.refuse_generators(fn, f"Bulkhead {self.name!r}")
        if not inspect.iscoroutinefunction(fn):
            msg = (
                f"Bulkhead {self.name!r} decorates async functions only, got {fn!r}; "
                "use ThreadBulkhead for sync functions"
            )
            raise TypeError(msg)

        # The wrapper repeats call_async() rather than delegating: a frame less.
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if self._in_use < self._max:
                self._in_use += 1
            else:
                await self._wait()
            try:
                return await fn(*args, **kwargs)
            finally:
                if self._waiters:
                    self._hand_off()
                else:
                    self._in_use -= 1

        return wrapper


class _ThreadWaiter:
    """One blocked thread: a lock it sleeps on, and whether a permit was handed to it."""

    __slots__ = ("granted", "lock")

    def __init__(self) -> None:
        self.granted = False
        self.lock = threading.Lock()
        self.lock.acquire()  # held, so the waiter's acquire() blocks until released


class ThreadBulkhead(_BulkheadBase):
    """At most ``max_concurrent`` threads at once inside; the rest wait or are refused.

    Use it as ``with bulkhead:``, as a decorator on a plain function, or
    through :meth:`call`. Waiting threads are served in arrival order: a freed
    permit is handed to the first of them.

    ``max_wait`` is real time (a thread cannot block on a fake clock); the
    injected ``clock`` only dates events.

    Args:
        name: The bulkhead's name, used in errors, events and metrics; usually
            the dependency's name.
        max_concurrent: How many calls may be inside at once; an integer >= 1.
        max_wait: Seconds (or a :class:`~datetime.timedelta`) a call waits for
            a permit when all are taken before it is refused. The default 0
            refuses at once.
        clock: Time source for events; defaults to the real monotonic clock.
        listeners: Where events go; defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: Some option is out of range; the message names each one.

    .. versionadded:: 0.1
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_wait: float | timedelta = DEFAULT_MAX_WAIT,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        super().__init__(name, max_concurrent, max_wait, clock, listeners)
        # A lock's timeout has a platform ceiling; a longer wait is "forever" anyway.
        self._max_wait = min(self._max_wait, threading.TIMEOUT_MAX)
        # Guards _in_use and _waiters; held for a few field updates, never while
        # a thread waits or the protected code runs.
        self._lock = threading.Lock()
        self._waiters: collections.deque[_ThreadWaiter] = collections.deque()

    @property
    def waiting(self) -> int:
        """How many threads are queued for a permit."""
        return len(self._waiters)

    # -- the permit ----------------------------------------------------------
    #
    # Every queued waiter is live (one that gives up removes itself under the
    # lock), and a release hands its permit to the first of them; so, as in
    # Bulkhead, `in_use < max` proves nobody is queued.

    def acquire(self) -> None:
        """Take a permit, blocking up to ``max_wait`` for one.

        Every successful ``acquire()`` must be matched by one :meth:`release`.

        Raises:
            BulkheadFullError: No permit came free within ``max_wait``.
        """
        with self._lock:
            if self._in_use < self._max:
                self._in_use += 1
                return
        self._wait()

    # `with` needs exactly what acquire() does; aliasing saves a frame.
    __enter__ = acquire

    def try_acquire(self) -> bool:
        """Take a permit if one is free right now, without blocking.

        Unlike :meth:`acquire` it neither raises nor emits an event when the
        bulkhead is full: the caller decides what a refusal means.

        Returns:
            Whether a permit was taken (then it must be given back with
            :meth:`release`).
        """
        with self._lock:
            if self._in_use < self._max:
                self._in_use += 1
                return True
        return False

    def release(self) -> None:
        """Give back a permit taken with :meth:`acquire` or :meth:`try_acquire`.

        Raises:
            RuntimeError: No permit is held.
        """
        with self._lock:
            if self._in_use <= 0:
                msg = f"bulkhead {self.name!r}: release() without a permit held"
                raise RuntimeError(msg)
            self._release_locked()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            if self._waiters:
                self._release_locked()
            else:
                self._in_use -= 1

    def _release_locked(self) -> None:
        waiters = self._waiters
        if waiters:
            waiter = waiters.popleft()
            waiter.granted = True  # the permit changes hands; in_use stays
            waiter.lock.release()
        else:
            self._in_use -= 1

    def _wait(self) -> None:
        """Queue for a permit; the slow half of :meth:`acquire`."""
        max_wait = _wait_limit(self._max_wait)
        if not max_wait:
            self._reject(None)
        started = self._now()
        waiter = _ThreadWaiter()
        # Everything from queueing to waking is inside the try, so an interrupt
        # (KeyboardInterrupt) anywhere in between leaves no stale waiter behind.
        try:
            with self._lock:
                if self._in_use < self._max:  # one came free since acquire() looked
                    self._in_use += 1
                    return
                self._waiters.append(waiter)
            if waiter.lock.acquire(timeout=max_wait):
                return
        except BaseException:
            self._abandon(waiter)
            raise
        with self._lock:
            if waiter.granted:  # handed over between the timeout and taking the lock
                return
            self._waiters.remove(waiter)
        self._reject(started)

    def _abandon(self, waiter: _ThreadWaiter) -> None:
        with self._lock:
            if waiter.granted:
                self._release_locked()  # it will not be used: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    # -- calling through the bulkhead ----------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` holding a permit and return its result.

        Raises:
            BulkheadFullError: No permit came free within ``max_wait``; ``fn``
                was not called.
        """
        with self:
            return fn(*args, **kwargs)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a plain function so every call holds a permit while it runs.

        Raises:
            TypeError: ``fn`` is a coroutine function, whose work would run after
                the permit was given back (use :class:`Bulkhead`).
        """
        _validate.refuse_generators(fn, f"ThreadBulkhead {self.name!r}")
        if inspect.iscoroutinefunction(fn):
            msg = (
                f"ThreadBulkhead {self.name!r} decorates sync functions only, got {fn!r}; "
                "use Bulkhead for async functions"
            )
            raise TypeError(msg)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return fn(*args, **kwargs)

        return wrapper
