"""Client-side adaptive throttling: shed calls in proportion to the backend's refusals.

A circuit breaker is all or nothing: below its threshold every call goes,
above it none does. When a dependency refuses part of its load (an
overloaded backend answering 503 to a third of its calls), opening the
breaker throws away the two thirds it would have served, and staying closed
sends it the third it will refuse, retries included. A :class:`Throttle`
sheds in between: with probability ``max(0, (requests - k * accepts) /
(requests + 1))`` over a trailing window (the Google SRE book, "Handling
Overload"), so the load it sends follows what the backend accepts.

When to use which:

* a **breaker** for a dependency that fails as a whole (down, hung,
  unreachable): it stops the calls at once and probes for recovery;
* a **throttle** for one that is overloaded and refuses a share of calls:
  it keeps sending what gets served;
* **both** for a dependency that can do either. Put the throttle outside
  the breaker (a :class:`~seawall.Dependency` does): the breaker opens on a
  full outage, the throttle trims a partial one, and the calls an open breaker
  refuses do not count against the backend in the throttle's window.

"Refused" means what :func:`refused` says by default: a timeout, a
connection error, or a transient HTTP status (408, 429, 5xx). Any other
answer, a 404 included, was accepted.

One object serves threads and coroutines: ``with throttle:``,
``async with throttle:``, ``@throttle``, or as the ``throttle`` of a
:class:`~seawall.Dependency`.

.. versionadded:: 0.2
"""

from __future__ import annotations

import functools
import inspect
import itertools
import random
import threading
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.core.throttle import ThrottleConfig, ThrottleState
from seawall.errors import ConfigError, ThrottledError
from seawall.events import LISTENERS, Listeners, ThrottleRejected
from seawall.retry import transient

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from datetime import timedelta
    from types import TracebackType

__all__ = ["Throttle", "refused"]

P = ParamSpec("P")
R = TypeVar("R")


def refused(exc: BaseException) -> bool:
    """Whether a failure means the backend did not accept the call (the default test).

    True for timeouts and what :data:`seawall.retry.transient` accepts:
    connection errors and the statuses 408, 429, 500, 502, 503 and 504.
    """
    return isinstance(exc, TimeoutError) or transient(exc)


class Throttle:
    """Client-side adaptive throttling of one dependency (the SRE book's formula).

    Args:
        name: The throttle's name, used in errors, events and metrics;
            usually the dependency's.
        k: The accepts multiplier (>= 1): up to ``k`` times what the backend
            accepted is sent before anything is shed. 2 is the book's
            default; closer to 1 sheds sooner.
        window: The trailing window in seconds (or a timedelta); default 120.
        buckets: How many slices the window is kept in (its resolution).
        max_probability: The most that is ever shed, in [0, 1).
        min_requests: Nothing is shed while the window holds fewer requests
            than this: one refusal alone would make the formula shed half of
            the next calls, a retry included.
        refused_on: Which failures mean the backend refused the call; default
            :func:`refused`. Other failures count as accepted.
        clock: Time source for the window and events; default the real clock.
        random: A ``() -> float`` in [0, 1), for the draws; default
            :func:`random.random` (inject a seeded one in tests).
        listeners: Where events go; default :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: A bad option; the message names each.
    """

    __slots__ = (
        "__weakref__",
        "_accepted",
        "_flushed",
        "_listeners",
        "_lock",
        "_now",
        "_period",
        "_random",
        "_refused",
        "_shedding",
        "_state",
        "_ticked",
        "config",
        "name",
        "rejected",
    )

    def __init__(
        self,
        name: str,
        *,
        k: float = 2.0,
        window: float | timedelta = 120.0,
        buckets: int = 60,
        max_probability: float = 0.95,
        min_requests: int = 10,
        refused_on: Callable[[BaseException], bool] = refused,
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        errors: list[str] = []
        if not isinstance(name, str) or not name:
            errors.append(f"name must be a non-empty string, got {name!r}")
        predicate: object = refused_on
        if not callable(predicate):
            errors.append(f"refused_on must be callable, got {predicate!r}")
        config = None
        try:
            config = ThrottleConfig(
                k=k,
                window=_validate.seconds(window),
                buckets=buckets,
                max_probability=max_probability,
                min_requests=min_requests,
            )
        except ConfigError as exc:
            errors.append(str(exc))
        _validate.fail_if(errors)
        assert config is not None  # noqa: S101 - fail_if raised otherwise
        #: The throttle's name, used in errors, events and metrics.
        self.name = name
        #: The validated configuration.
        self.config = config
        self._state = ThrottleState(config)
        # Accepts not yet in the window (see "the decision" below).
        self._accepted = itertools.count(1)
        self._flushed = 0
        self._period = 0
        self._ticked = 0.0
        self._shedding = False
        self._refused = refused_on
        #: How many calls this throttle has shed.
        self.rejected = 0
        self._lock = threading.Lock()
        self._now = (clock or MONOTONIC).monotonic
        self._random = _random_source(random)
        self._listeners = LISTENERS if listeners is None else listeners

    # -- what it reads ---------------------------------------------------------------

    @property
    def probability(self) -> float:
        """The probability that a call made now is shed."""
        with self._lock:
            self._flush(self._now())
            return self._state.probability(self._now())

    @property
    def requests(self) -> int:
        """Calls in the trailing window, those it shed included."""
        with self._lock:
            self._flush(self._now())
            return self._state.requests

    @property
    def accepts(self) -> int:
        """Calls in the trailing window that the backend accepted."""
        with self._lock:
            self._flush(self._now())
            return self._state.accepts

    # -- the decision ----------------------------------------------------------------
    #
    # The healthy path takes no lock and reads no clock. A success is a next()
    # on a counter of accepts not yet in the window; every `_period + 1`-th
    # one (a power of two, chosen so that this happens about eight times a
    # slice of the window) moves them into the window under the lock and asks
    # the window whether anything could be shed now: `_shedding`. Admission
    # reads that flag; only while it is set does a call draw and take the lock.
    # Refusals are counted at once, under the lock. The window lags what it
    # counts by at most an eighth of a slice.

    def admit(self) -> None:
        """Let a call go, or shed it.

        A call that goes is counted once :meth:`record` tells its outcome; one
        that never reaches the backend (refused further in, cancelled) is
        simply not recorded.

        Raises:
            ThrottledError: The call was shed.
        """
        if self._shedding:
            self._decide()

    def _decide(self) -> None:
        """Admit while the window could shed: draw, and count a shed call."""
        draw = self._random()
        with self._lock:
            now = self._now()
            self._flush(now)
            p = self._state.admit(now, draw)
            self._shedding = self._state.shedding()
            if not p:
                return
            self.rejected += 1
            requests, accepts = self._state.requests, self._state.accepts
        if self._listeners:
            self._listeners.emit(
                ThrottleRejected(
                    name=self.name,
                    at=self._now(),
                    probability=p,
                    requests=requests,
                    accepts=accepts,
                )
            )
        raise ThrottledError(name=self.name, probability=p)

    def record(self, exc: BaseException | None = None) -> None:
        """Count an admitted call's outcome: ``exc`` is its failure, ``None`` a success.

        A success, or a failure that :func:`refused` (or ``refused_on``) does
        not call a refusal, counts as accepted. An interruption (a
        cancellation) counts for nothing.
        """
        if exc is None:
            if not next(self._accepted) & self._period:
                self._tick()
            return
        if not isinstance(exc, Exception):
            return
        if not self._refused(exc):
            if not next(self._accepted) & self._period:
                self._tick()
            return
        with self._lock:
            now = self._now()
            self._flush(now)
            self._state.refused(now)
            self._shedding = self._state.shedding()

    def _tick(self) -> None:
        """Move the pending accepts into the window; choose how often to do so."""
        with self._lock:
            now = self._now()
            calls = self._flush(now)
            self._shedding = self._state.shedding()
            elapsed = now - self._ticked
            self._ticked = now
            # About eight ticks a slice: a busy client pays for the clock and
            # the lock once in many calls, a quiet one at every call.
            per_tick = calls * (self._state.config.window / self._state.config.buckets) / 8
            period = 1
            if elapsed > 0:
                while period * 2 * elapsed <= per_tick:
                    period *= 2
            self._period = period - 1

    def _flush(self, now: float) -> int:
        """Count the accepts not yet in the window (under the lock); return how many."""
        seen = _peek(self._accepted) - 1
        n = seen - self._flushed
        if n > 0:
            self._flushed = seen
            self._state.accepted(now, n)
        return max(n, 0)

    def reset(self) -> None:
        """Forget the window: shed nothing until the backend refuses again."""
        with self._lock:
            self._flushed = _peek(self._accepted) - 1
            self._state.reset()
            self._shedding = False

    # -- as a context manager and a decorator -------------------------------------------

    def __enter__(self) -> Self:
        if self._shedding:
            self._decide()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            if not next(self._accepted) & self._period:
                self._tick()
            return
        self.record(exc)

    async def __aenter__(self) -> Self:
        if self._shedding:
            self._decide()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            if not next(self._accepted) & self._period:
                self._tick()
            return
        self.record(exc)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` unless shed, and learn from its outcome.

        Raises:
            ThrottledError: The call was shed; ``fn`` was not called.
        """
        if self._shedding:
            self._decide()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.record(exc)
            raise
        if not next(self._accepted) & self._period:
            self._tick()
        return result

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` unless shed, and learn from its outcome.

        Raises:
            ThrottledError: The call was shed; ``fn`` was not called.
        """
        if self._shedding:
            self._decide()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.record(exc)
            raise
        if not next(self._accepted) & self._period:
            self._tick()
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function (plain or ``async def``): each call is admitted or shed.

        Raises:
            TypeError: ``fn`` is a generator or async generator function: the
                downstream's refusals, raised as it is iterated, would go uncounted.
        """
        _validate.refuse_generators(fn, f"Throttle {self.name!r}")
        accepted = self._accepted
        record = self.record
        tick = self._tick
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if self._shedding:
                    self._decide()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    record(exc)
                    raise
                if not next(accepted) & self._period:
                    tick()
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if self._shedding:
                self._decide()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                record(exc)
                raise
            if not next(accepted) & self._period:
                tick()
            return result

        return wrapper

    def __repr__(self) -> str:
        s = self._state
        return f"<Throttle {self.name!r} requests={s.requests} accepts={s.accepts}>"


def _peek(counter: itertools.count[int]) -> int:
    """Return the value an itertools.count gives next, without advancing it."""
    return int(cast("Any", counter.__reduce__())[1][0])


def _random_source(source: object) -> Callable[[], float]:
    if source is None:
        return random.random
    if not callable(source):
        _validate.fail_if([f"random must be callable, got {source!r}"])
    return source  # type: ignore[return-value]
