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
from typing import TYPE_CHECKING, Any, Literal, NoReturn, ParamSpec, Self, TypeVar

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
_STARTED: contextvars.ContextVar[tuple[float, Any, object] | None] = contextvars.ContextVar(
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
        "_calls",
        "_in",
        "_limit",
        "_listeners",
        "_lock",
        "_min_rtt",
        "_now",
        "_period",
        "_sampled_at",
        "_sampled_calls",
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
        self._min_rtt = self._window.config.min_rtt
        self._limit = algo.limit
        self._in = 0  # calls in flight (see "the permit" below)
        self._calls = 0  # calls admitted so far: which of them are timed
        self._sampled_calls = 0
        self._sampled_at = 0.0  # when the last timed call ended (see _resample)
        self._period = 0  # time every call until the rate says otherwise
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
        return self._in

    @property
    def in_use(self) -> int:
        """How many calls hold a permit (the name a bulkhead's readers look for)."""
        return self._in

    @property
    def available(self) -> int:
        """How many more calls the limit admits now (0 when over a limit that fell)."""
        return max(0, self._limit - self._in)

    # -- the permit ----------------------------------------------------------------
    #
    # The sync paths (threads) take the lock, held for a few updates; the async
    # paths take none, as Bulkhead: a coroutine is not preempted between the
    # check and the increment, so they must run on one event loop at a time.
    # Both count in `_in`, the calls in flight.
    #
    # Sampling: timing every call costs two clock reads, about the price of a
    # whole bulkhead permit. Every `_period + 1`-th call is timed; the period
    # follows the rate of calls (see _resample), so that a window still gets
    # about four times its min_samples: every call, below a few hundred calls a
    # second. A drop (a timeout, a 429 or 503) is always counted.

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
        cap = self._limit if share >= 1.0 else max(1, int(self._limit * share))
        with self._lock:
            if self._in < cap:
                self._in += 1
                self._calls += 1
                return True
        return False

    def acquire(self) -> None:
        """Take a permit, or refuse at once: it never waits, in threads or tasks.

        Raises:
            LimitExceededError: The limit's worth of calls is in flight.
        """
        lock = self._lock
        lock.acquire()
        if self._in < self._limit:
            self._in += 1
            self._calls += 1
            lock.release()
            return
        lock.release()
        self._full()

    def release(self, rtt: float | None = None, *, dropped: bool = False) -> None:
        """Give back a permit, and with ``rtt`` teach the limit what the call measured.

        Args:
            rtt: The call's round-trip time in seconds, or ``None`` when it says
                nothing of the load (cancelled, or failed for a reason of its own).
            dropped: The call timed out or the dependency refused it (429, 503).

        Raises:
            RuntimeError: No permit is held.
        """
        lock = self._lock
        lock.acquire()
        in_flight = self._in
        if in_flight <= 0:
            lock.release()
            msg = f"adaptive limit {self.name!r}: release() without a permit held"
            raise RuntimeError(msg)
        self._in = in_flight - 1
        lock.release()
        # A caller that times every call (a Dependency) is sampled like the
        # limit's own paths: one call in `_period + 1`, and every drop.
        if rtt is not None and (dropped or not self._calls & self._period):
            self._sample(self._now(), rtt, in_flight, drop=dropped)

    def lend(self) -> None:
        """Hand a held permit back for a while, without a sample (see :mod:`seawall.waits`).

        A request of the service waiting on a dependency does none of the
        service's own work: load shedding counts it out until :meth:`reclaim`.
        """
        with self._lock:
            self._in -= 1

    def reclaim(self) -> None:
        """Take a lent permit back, whatever the limit now: the request is already running."""
        with self._lock:
            self._in += 1

    def _full(self) -> NoReturn:
        """Refuse a call the limit has no room for: count it, emit, raise."""
        self.rejected += 1
        limit = self._limit
        if self._listeners:
            self._listeners.emit(LimitRejected(name=self.name, at=self._now(), limit=limit))
        raise LimitExceededError(name=self.name, limit=limit)

    def _sample(self, now: float, rtt: float | None, in_flight: int, *, drop: bool) -> None:
        """Feed one measured call to the window (under the lock); move the limit."""
        lock = self._lock
        lock.acquire()
        window = self._window
        ends = window._ends
        if (
            not drop
            and rtt is not None
            and ends is not None
            and now < ends
            and rtt >= self._min_rtt
            and not window._dropped
        ):
            # SampleWindow.add's common case, inline (the window stays open):
            # its frame is most of a timed call's cost.
            window._count += 1
            window._sum += rtt
            if rtt < window._fastest:  # noqa: PLR1730 - a comparison, not a call
                window._fastest = rtt
            if in_flight > window._max_in_flight:  # noqa: PLR1730
                window._max_in_flight = in_flight
            if not window._count & 15:
                self._resample(now)
            lock.release()
            return
        try:
            self._resample(now)
            moved = window.add(now, rtt, in_flight, drop)
            if moved is not None:
                self._limit = moved[1]
        finally:
            lock.release()
        if moved is None:
            return
        if moved[0] != moved[1] and self._listeners:
            self._changed(moved[0], moved[1], rtt, in_flight, drop)

    def _resample(self, now: float) -> None:
        """At a timed call: time every ``period``-th call, for about 4 x min_samples a window.

        The period follows the rate of calls since the last timed one, so a
        busy limit times few of its calls and a quiet one all of them.
        """
        calls = self._calls
        since = calls - self._sampled_calls
        elapsed = now - self._sampled_at if self._sampled_at else 0.0
        self._sampled_calls, self._sampled_at = calls, now
        config = self._window.config
        wanted = since * config.min_time / (4 * config.min_samples)  # calls per timed call
        # Never more than four limits' worth of calls between two timed ones:
        # while the limit is in use, that is a timed call at least every few
        # RTTs, however fast the rate falls (a dependency slowing down is the
        # moment it must not be blind); below half the limit in use the
        # algorithms learn nothing anyway.
        cap = 4 * self._limit
        period = 1
        if elapsed > 0:
            while period * 2 * elapsed <= wanted and period * 2 <= cap:
                period *= 2
        self._period = period - 1  # a mask: a call is timed when its number & mask == 0

    def _changed(self, old: int, new: int, rtt: float | None, in_flight: int, drop: bool) -> None:
        algo = self.algorithm
        # The window's average is what the algorithm saw; Gradient2 keeps it.
        seen = getattr(algo, "last_rtt", rtt or 0.0)
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

    def _learn(self, started: float | None, exc: BaseException, in_flight: int) -> None:
        """After a call that raised ``exc`` gave its permit back: count a drop."""
        if isinstance(exc, Exception) and dropped(exc):
            now = self._now()
            # An untimed call's drop still counts; its RTT is not known.
            self._sample(now, None if started is None else now - started, in_flight, drop=True)

    def _failed_sync(self, started: float | None, exc: BaseException) -> None:
        lock = self._lock
        lock.acquire()
        in_flight = self._in
        self._in = in_flight - 1
        lock.release()
        self._learn(started, exc, in_flight)

    def _failed_async(self, started: float | None, exc: BaseException) -> None:
        in_flight = self._in
        self._in = in_flight - 1
        self._learn(started, exc, in_flight)

    # -- as a context manager and a decorator -----------------------------------------
    #
    # Each path is written out (permit, timing, return) rather than delegating:
    # a Python frame is about a tenth of the limit's cost per call. A timed
    # `with` keeps its start time in a context variable (the one state a
    # `with` cannot keep on an object shared by calls), with the limit that
    # owns it; an untimed one keeps nothing, and its exit leaves an entry of
    # its own limit on top alone... unless it is nested in a timed `with` of
    # the same limit in the same task, whose sample it then takes (a rare
    # shape, and only a sample is misplaced, never a permit).

    def __enter__(self) -> Self:
        lock = self._lock
        lock.acquire()
        if self._in < self._limit:
            self._in += 1
            calls = self._calls = self._calls + 1
            lock.release()
        else:
            lock.release()
            self._full()
        if not calls & self._period:
            _STARTED.set((self._now(), _STARTED.get(), self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        started = self._pop()
        if exc is not None:
            self._failed_sync(started, exc)
            return
        lock = self._lock
        lock.acquire()
        in_flight = self._in
        self._in = in_flight - 1
        lock.release()
        if started is not None:
            now = self._now()
            self._sample(now, now - started, in_flight, drop=False)

    async def __aenter__(self) -> Self:
        if self._in < self._limit:
            self._in += 1
            calls = self._calls = self._calls + 1
        else:
            self._full()
        if not calls & self._period:
            _STARTED.set((self._now(), _STARTED.get(), self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        started = self._pop()
        if exc is not None:
            self._failed_async(started, exc)
            return
        in_flight = self._in
        self._in = in_flight - 1
        if started is not None:
            now = self._now()
            self._sample(now, now - started, in_flight, drop=False)

    def _pop(self) -> float | None:
        """Take the start of this limit's innermost timed `with` off the stack (or ``None``)."""
        top = _STARTED.get()
        if top is None or top[2] is not self:
            return None
        _STARTED.set(top[1])
        return top[0]

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` holding a permit and return its result.

        Raises:
            LimitExceededError: The limit was reached; ``fn`` was not called.
        """
        return self._sync_call(fn, args, kwargs)

    def _sync_call(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        lock = self._lock
        lock.acquire()
        if self._in < self._limit:
            self._in += 1
            calls = self._calls = self._calls + 1
            lock.release()
        else:
            lock.release()
            self._full()
        if calls & self._period:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._failed_sync(None, exc)
                raise
            lock.acquire()
            self._in -= 1
            lock.release()
            return result
        started = self._now()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._failed_sync(started, exc)
            raise
        lock.acquire()
        in_flight = self._in
        self._in = in_flight - 1
        lock.release()
        now = self._now()
        self._sample(now, now - started, in_flight, drop=False)
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
        if self._in < self._limit:
            self._in += 1
            calls = self._calls = self._calls + 1
        else:
            self._full()
        if calls & self._period:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._failed_async(None, exc)
                raise
            self._in -= 1
            return result
        started = self._now()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._failed_async(started, exc)
            raise
        in_flight = self._in
        self._in = in_flight - 1
        now = self._now()
        self._sample(now, now - started, in_flight, drop=False)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function (plain or ``async def``) so each call holds a permit.

        Raises:
            TypeError: ``fn`` is a generator or async generator function: its
                work would run after the permit was given back.
        """
        _validate.refuse_generators(fn, f"AdaptiveLimit {self.name!r}")
        if inspect.iscoroutinefunction(fn):
            now, failed, sample, full = self._now, self._failed_async, self._sample, self._full

            # call_async() written out again: a frame less per call.
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if self._in < self._limit:
                    self._in += 1
                    calls = self._calls = self._calls + 1
                else:
                    full()
                if calls & self._period:
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException as exc:
                        failed(None, exc)
                        raise
                    self._in -= 1
                    return result
                started = now()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    failed(started, exc)
                    raise
                in_flight = self._in
                self._in = in_flight - 1
                ended = now()
                sample(ended, ended - started, in_flight, drop=False)
                return result

            return async_wrapper  # type: ignore[return-value]
        sync_call = self._sync_call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return sync_call(fn, args, kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"<AdaptiveLimit {self.name!r} in_flight={self._in}/{self._limit}>"


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
