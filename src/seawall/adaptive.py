"""Adaptive concurrency limits: a bulkhead whose size is measured, not guessed.

A fixed bulkhead of 20 is right for one service time and wrong for every
other: too small when the dependency is fast and has room, too large when it
slows down and the extra calls only queue there. An :class:`AdaptiveLimit`
moves its limit with what the calls measure (Little's law: the concurrency a
dependency can take is its throughput times its latency):

* ``"gradient2"`` (Netflix concurrency-limits' Gradient2): grows while the
  latency stays within ``tolerance`` of its long-run average, shrinks in
  proportion as it rises. For a dependency whose latency rises with load:
  queueing is what it detects.
* ``"aimd"``: grows by one per window while the limit is in use, and
  multiplies by ``backoff_ratio`` when a call is dropped (timed out, or
  refused by the dependency with 429 or 503) or takes longer than
  ``timeout``. For a dependency whose service time can change on its own
  (a slow payment provider): it finds how many calls fit within
  ``timeout``, whatever the service time.

Calls over the limit are refused at once with
:class:`~seawall.errors.LimitExceededError` (a
:class:`~seawall.errors.BulkheadFullError`): waiting in a queue for a permit
is the latency the limit exists to keep out.

One object serves threads and coroutines alike: ``with limit:``,
``async with limit:``, ``@limit`` on a plain or an ``async def`` function,
or as the ``bulkhead`` of a :class:`~seawall.Dependency` (for its
:meth:`~seawall.Dependency.call` and :meth:`~seawall.Dependency.call_sync`
both). Its counters are guarded by a lock held for a
few updates, never across a call.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Self, TypeVar

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.core.limit import (
    Aimd,
    AimdConfig,
    Gradient2,
    Gradient2Config,
    LimitAlgorithm,
    SampleWindow,
    SampleWindowConfig,
)
from seawall.errors import ConfigError, LimitExceededError
from seawall.events import LISTENERS, LimitChanged, LimitRejected, Listeners
from seawall.retry import status_of

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType

__all__ = ["ALGORITHMS", "AdaptiveLimit", "dropped"]

P = ParamSpec("P")
R = TypeVar("R")

ALGORITHMS = ("gradient2", "aimd")
"""The algorithms :class:`AdaptiveLimit` knows by name."""

_GRADIENT2_ONLY = ("smoothing", "tolerance", "long_window", "queue_size", "probe_interval")
_AIMD_ONLY = ("backoff_ratio", "timeout")
_OVERLOAD_STATUSES = frozenset({429, 503})

# When each `with limit:` of this context began, innermost first: the state a
# context manager cannot keep on a shared object.
_STARTED: contextvars.ContextVar[tuple[float, Any] | None] = contextvars.ContextVar(
    "seawall_limit_started", default=None
)


def dropped(exc: BaseException) -> bool:
    """Whether a failure says "too much load": a timeout, or a 429 or 503 answer.

    Other failures (a 500, a 404, a bug) say nothing of the dependency's
    capacity: the limit learns nothing from them.
    """
    return isinstance(exc, TimeoutError) or status_of(exc) in _OVERLOAD_STATUSES


class AdaptiveLimit:
    """A concurrency limit that moves with measured latency; usable where a bulkhead is.

    Args:
        name: The limit's name, used in errors, events and metrics; usually
            the dependency's.
        algorithm: ``"gradient2"`` (default), ``"aimd"``, or any object with
            the :class:`~seawall.core.limit.LimitAlgorithm` protocol.
        initial: The limit to start from (within ``[min, max]``).
        min: The limit never falls below this (>= 1).
        max: ...nor rises above this.
        smoothing: Gradient2: how far each window moves the limit, in (0, 1].
        tolerance: Gradient2: how much slower than the long-run RTT a window
            may be before the limit shrinks (>= 1).
        long_window: Gradient2: about how many windows the long-run RTT
            averages over (it drifts with a lasting change).
        queue_size: Gradient2: how much the limit grows per window while the
            latency holds.
        probe_interval: Gradient2: every this many windows (0: never) the
            limit drops low for a window to measure the RTT without a queue,
            which restarts the baseline; without it a limit that starts (or
            drifts) above the capacity takes the queued RTT for normal.
        backoff_ratio: AIMD: what a drop multiplies the limit by, in [0.5, 1).
        timeout: AIMD: a window whose average RTT is longer than this, in
            seconds, counts as a drop.
        window: How calls are gathered into one sample of the algorithm
            (default: at least 10 calls and 1 s).
        clock: Time source for RTTs and events; default the real monotonic clock.
        listeners: Where events go; default :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: A bad option, or an option of the other algorithm; the
            message names each.
    """

    __slots__ = (
        "__weakref__",
        "_in_flight",
        "_limit",
        "_listeners",
        "_lock",
        "_now",
        "_window",
        "algorithm",
        "name",
        "rejected",
    )

    def __init__(
        self,
        name: str,
        *,
        algorithm: Literal["gradient2", "aimd"] | LimitAlgorithm = "gradient2",
        initial: int = 20,
        min: int = 1,  # noqa: A002 - the contract's name
        max: int = 200,  # noqa: A002 - the contract's name
        smoothing: float | None = None,
        tolerance: float | None = None,
        long_window: int | None = None,
        queue_size: int | None = None,
        probe_interval: int | None = None,
        backoff_ratio: float | None = None,
        timeout: float | None = None,
        window: SampleWindowConfig | None = None,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        errors: list[str] = []
        if not isinstance(name, str) or not name:
            errors.append(f"name must be a non-empty string, got {name!r}")
        given = {
            "smoothing": smoothing,
            "tolerance": tolerance,
            "long_window": long_window,
            "queue_size": queue_size,
            "probe_interval": probe_interval,
            "backoff_ratio": backoff_ratio,
            "timeout": timeout,
        }
        tuning = {k: v for k, v in given.items() if v is not None}
        algo: LimitAlgorithm | None = None
        try:
            algo = _build(algorithm, initial, min, max, tuning)
        except ConfigError as exc:
            errors.append(str(exc))
        shape: object = window  # typed, but callers may not be
        if shape is not None and not isinstance(shape, SampleWindowConfig):
            errors.append(f"window must be a SampleWindowConfig, got {shape!r}")
        _validate.fail_if(errors)
        assert algo is not None  # noqa: S101 - fail_if raised otherwise
        #: The limit's name, used in errors, events and metrics.
        self.name = name
        #: The limit algorithm (read its state; do not feed it).
        self.algorithm = algo
        self._window = SampleWindow(algo, window)
        self._limit = algo.limit
        self._in_flight = 0
        #: How many calls this limit has refused.
        self.rejected = 0
        self._lock = threading.Lock()
        self._now = (clock or MONOTONIC).monotonic
        self._listeners = LISTENERS if listeners is None else listeners

    # -- what it reads -----------------------------------------------------------

    @property
    def limit(self) -> int:
        """How many calls may be in flight now."""
        return self._limit

    @property
    def max_concurrent(self) -> int:
        """The current limit (the name a bulkhead's readers look for)."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """How many calls hold a permit."""
        return self._in_flight

    @property
    def in_use(self) -> int:
        """How many calls hold a permit (the name a bulkhead's readers look for)."""
        return self._in_flight

    @property
    def available(self) -> int:
        """How many more calls the limit admits now (0 when over a limit that fell)."""
        free = self._limit - self._in_flight
        return max(0, free)

    # -- the permit ----------------------------------------------------------------

    def try_acquire(self, share: float = 1.0) -> bool:
        """Take a permit if the limit allows one now; never raises nor emits.

        Args:
            share: Take it only while fewer than ``share`` of the limit's
                calls are in flight (at least one: a share of 0.5 of a limit
                of 1 still admits a call when none is in flight). Callers of
                lower priority ask with a smaller share, so that they are the
                first refused as the limit fills.

        Returns:
            Whether a permit was taken (then give it back with :meth:`release`).
        """
        with self._lock:
            cap = self._limit if share >= 1.0 else max(1, int(self._limit * share))
            if self._in_flight < cap:
                self._in_flight += 1
                return True
        return False

    def acquire(self) -> None:
        """Take a permit, or refuse at once: it never waits, in threads or tasks.

        Raises:
            LimitExceededError: The limit's worth of calls is in flight.
        """
        with self._lock:
            if self._in_flight < self._limit:
                self._in_flight += 1
                return
            self.rejected += 1
            limit = self._limit
        self._reject(limit)

    def release(self, rtt: float | None = None, *, dropped: bool = False) -> None:
        """Give back a permit, and with ``rtt`` teach the limit what the call measured.

        Args:
            rtt: The call's round-trip time in seconds, or ``None`` when it says
                nothing of the load (cancelled, or failed for a reason of its own).
            dropped: The call timed out or the dependency refused it (429, 503).

        Raises:
            RuntimeError: No permit is held.
        """
        with self._lock:
            in_flight = self._in_flight
            if in_flight <= 0:
                msg = f"adaptive limit {self.name!r}: release() without a permit held"
                raise RuntimeError(msg)
            self._in_flight = in_flight - 1
            if rtt is None:
                return
            moved = self._window.add(self._now(), rtt, in_flight, dropped)
            if moved is None:
                return
            self._limit = moved[1]
        if moved[0] != moved[1] and self._listeners:
            self._changed(moved[0], moved[1], rtt, in_flight, dropped)

    def lend(self) -> None:
        """Hand a held permit back for a while, without a sample (see :mod:`seawall.waits`).

        A request of the service waiting on a dependency does none of the
        service's own work: load shedding counts it out until :meth:`reclaim`.
        """
        with self._lock:
            self._in_flight -= 1

    def reclaim(self) -> None:
        """Take a lent permit back, whatever the limit now: the request is already running."""
        with self._lock:
            self._in_flight += 1

    def _reject(self, limit: int) -> None:
        if self._listeners:
            self._listeners.emit(LimitRejected(name=self.name, at=self._now(), limit=limit))
        raise LimitExceededError(name=self.name, limit=limit)

    def _changed(self, old: int, new: int, rtt: float, in_flight: int, drop: bool) -> None:
        algo = self.algorithm
        # The window's average is what the algorithm saw; Gradient2 keeps it.
        seen = getattr(algo, "last_rtt", rtt)
        self._listeners.emit(
            LimitChanged(
                name=self.name,
                at=self._now(),
                old=old,
                new=new,
                rtt=seen,
                in_flight=in_flight,
                dropped=drop,
            )
        )

    # -- as a context manager and a decorator -----------------------------------------

    def __enter__(self) -> Self:
        self.acquire()
        _STARTED.set((self._now(), _STARTED.get()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        started = _STARTED.get()
        if started is None:  # pragma: no cover - only if the context was switched under us
            self.release()
            return
        _STARTED.set(started[1])
        self._end(started[0], exc)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _end(self, started: float, exc: BaseException | None) -> None:
        if exc is None:
            self.release(self._now() - started)
        elif isinstance(exc, Exception) and dropped(exc):
            self.release(self._now() - started, dropped=True)
        else:
            self.release()

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` holding a permit and return its result.

        Raises:
            LimitExceededError: The limit was reached; ``fn`` was not called.
        """
        self.acquire()
        started = self._now()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._end(started, exc)
            raise
        self.release(self._now() - started)
        return result

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` holding a permit and return its result.

        Raises:
            LimitExceededError: The limit was reached; ``fn`` was not called.
        """
        self.acquire()
        started = self._now()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._end(started, exc)
            raise
        self.release(self._now() - started)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function (plain or ``async def``) so each call holds a permit."""
        if inspect.iscoroutinefunction(fn):
            call_async = self.call_async

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await call_async(fn, *args, **kwargs)

            return async_wrapper  # type: ignore[return-value]
        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return call(fn, *args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"<AdaptiveLimit {self.name!r} in_flight={self._in_flight}/{self._limit}>"


def _build(
    algorithm: object, initial: object, low: object, high: object, tuning: dict[str, Any]
) -> LimitAlgorithm:
    if isinstance(algorithm, LimitAlgorithm) and not isinstance(algorithm, str):
        if tuning:
            names = ", ".join(sorted(tuning))
            msg = f"{names}: tuning options are for the named algorithms, not {algorithm!r}"
            raise ConfigError(msg)
        return algorithm
    if algorithm == "gradient2":
        wrong = sorted(set(tuning) & set(_AIMD_ONLY))
        if wrong:
            msg = f"{', '.join(wrong)}: AIMD's options, not Gradient2's (algorithm='gradient2')"
            raise ConfigError(msg)
        return Gradient2(Gradient2Config(initial=initial, min=low, max=high, **tuning))  # type: ignore[arg-type]
    if algorithm == "aimd":
        wrong = sorted(set(tuning) & set(_GRADIENT2_ONLY))
        if wrong:
            msg = f"{', '.join(wrong)}: Gradient2's options, not AIMD's (algorithm='aimd')"
            raise ConfigError(msg)
        return Aimd(AimdConfig(initial=initial, min=low, max=high, **tuning))  # type: ignore[arg-type]
    msg = f"algorithm must be one of {', '.join(ALGORITHMS)} or a LimitAlgorithm, got {algorithm!r}"
    raise ConfigError(msg)
