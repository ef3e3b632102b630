"""The circuit breaker: stop calling a dependency that is failing, then test it gently.

A breaker watches the outcomes of recent calls in a sliding window. When the
share of failed (or slow) calls reaches a threshold, it *opens*: calls are
rejected at once with :class:`~seawall.errors.CircuitOpenError`, without
touching the dependency, so a struggling service gets room to recover and the
caller fails in microseconds instead of waiting on a timeout. After
``open_duration`` it lets ``half_open_calls`` probes through; if they all
succeed it closes, otherwise it opens again.

Use it as ``with breaker:``, ``async with breaker:``, a decorator on a sync or
async function, or through :meth:`CircuitBreaker.call` /
:meth:`CircuitBreaker.call_async`. All of them drive the one state machine in
:mod:`seawall.core.breaker_state`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.core.breaker_state import (
    DEFAULT_FAILURE_RATE_THRESHOLD,
    DEFAULT_HALF_OPEN_CALLS,
    DEFAULT_MINIMUM_CALLS,
    DEFAULT_OPEN_DURATION,
    DEFAULT_SLOW_CALL_DURATION,
    DEFAULT_SLOW_CALL_RATE_THRESHOLD,
    DEFAULT_WINDOW,
    MAX_MINIMUM_CALLS,
    BreakerConfig,
    BreakerMetrics,
    BreakerState,
    ExceptionSpec,
    State,
)
from seawall.core.window import CountWindow, TimeWindow
from seawall.events import LISTENERS, Listeners

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from datetime import timedelta
    from types import TracebackType

__all__ = [
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_HALF_OPEN_CALLS",
    "DEFAULT_MINIMUM_CALLS",
    "DEFAULT_OPEN_DURATION",
    "DEFAULT_SLOW_CALL_DURATION",
    "DEFAULT_SLOW_CALL_RATE_THRESHOLD",
    "DEFAULT_WINDOW",
    "MAX_MINIMUM_CALLS",
    "BreakerConfig",
    "BreakerMetrics",
    "CircuitBreaker",
    "CountWindow",
    "State",
    "TimeWindow",
]

P = ParamSpec("P")
R = TypeVar("R")


class CircuitBreaker:
    """A circuit breaker over a sliding window of failure rate and slow-call rate.

    Args:
        name: The breaker's name, used in errors, events and metrics; usually
            the dependency's name.
        failure_rate_threshold: Open when the share of failed calls in the
            window reaches this, in (0, 1]. Default 0.5.
        slow_call_rate_threshold: Open when the share of slow calls reaches
            this, in (0, 1]. The default 1.0 means slow calls never open it.
        slow_call_duration: A call taking longer than this many seconds is
            slow (> 0: at zero every call would be).
        window: Which calls the rates are computed over:
            ``CountWindow(size)`` or ``TimeWindow(seconds, buckets)``.
        minimum_calls: No decision until the window holds this many calls
            (for a count window smaller than this, until it is full), from 1
            to :data:`MAX_MINIMUM_CALLS`.
        open_duration: Seconds to stay OPEN before probing (> 0: a circuit
            that probes at once never rests its dependency); or a callable given
            the number of consecutive openings (1, 2, ...) that returns them, for
            a growing back-off such as ``lambda n: min(30 * 2 ** (n - 1), 600)``.
        half_open_calls: Probes admitted at once in HALF_OPEN; all must succeed
            to close. Others are rejected.
        half_open_max_wait: A probe unfinished this many seconds after the
            circuit went HALF_OPEN counts as failed, so a hung probe cannot keep
            it half-open. Default: the current open duration.
        record: Which exceptions count as failures: a type, a tuple of types or
            a predicate. Others count as successes. Default: every ``Exception``.
        ignore: Exceptions that count as neither success nor failure: a type,
            a tuple of types or a predicate. When ``ignore`` and ``record``
            both match, ``ignore`` wins.
        record_result: A predicate given each result: true counts the call as
            failed though it returned (resilience4j's ``recordResult``), e.g.
            ``lambda r: r.status_code >= 500``. The result is still returned.
            It sees the results of the decorator, :meth:`call`,
            :meth:`call_async` and a Dependency's calls; a ``with`` block has
            no result to show it.
        shadow: ``True`` or ``False``: compute every decision and emit it (``StateChanged`` and
            ``CallRejected`` events with ``shadow=True``) but never reject a
            call: tune thresholds on real traffic before enforcing them.
        clock: Time source; defaults to the real monotonic clock.
        listeners: Where events go; defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: Some option is out of range; the message names each one.
    """

    __slots__ = (
        "__weakref__",
        "_core",
        "_cv",
        "_now",
        "_tick",
        "_timed",
        "config",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD,
        slow_call_rate_threshold: float = DEFAULT_SLOW_CALL_RATE_THRESHOLD,
        slow_call_duration: float | timedelta = DEFAULT_SLOW_CALL_DURATION,
        window: CountWindow | TimeWindow = DEFAULT_WINDOW,
        minimum_calls: int = DEFAULT_MINIMUM_CALLS,
        open_duration: float | timedelta | Callable[[int], float] = DEFAULT_OPEN_DURATION,
        half_open_calls: int = DEFAULT_HALF_OPEN_CALLS,
        half_open_max_wait: float | timedelta | None = None,
        record: ExceptionSpec | Callable[[BaseException], bool] = Exception,
        ignore: ExceptionSpec | Callable[[BaseException], bool] = (),
        record_result: Callable[[Any], bool] | None = None,
        shadow: bool = False,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            _validate.fail_if([f"name must be a non-empty string, got {name!r}"])
        self.name = name
        self.config = BreakerConfig(
            failure_rate_threshold=failure_rate_threshold,
            slow_call_rate_threshold=slow_call_rate_threshold,
            slow_call_duration=_validate.seconds(slow_call_duration),
            window=window,
            minimum_calls=minimum_calls,
            open_duration=(
                open_duration if callable(open_duration) else _validate.seconds(open_duration)
            ),
            half_open_calls=half_open_calls,
            half_open_max_wait=(
                None if half_open_max_wait is None else _validate.seconds(half_open_max_wait)
            ),
            record=record,
            ignore=ignore,
            record_result=record_result,
            shadow=shadow,
        )
        clock = MONOTONIC if clock is None else clock
        core = BreakerState(name, self.config, clock, LISTENERS if listeners is None else listeners)
        self._core = core
        self._tick = core.tick
        self._now = clock.monotonic
        self._timed = core.times_calls
        self._cv: contextvars.ContextVar[tuple[int, float, Any]] = contextvars.ContextVar(
            f"seawall.breaker.{name}"
        )

    # -- introspection and operator controls --------------------------------

    @property
    def state(self) -> State:
        """The current :class:`State` (time-driven moves are applied on reading)."""
        return self._core.state

    @property
    def metrics(self) -> BreakerMetrics:
        """A snapshot: calls, failures, slow calls and their rates in the window."""
        return self._core.metrics()

    @property
    def shadow(self) -> bool:
        """Whether this breaker only reports its decisions and never rejects."""
        return self._core.shadow

    def force_open(self) -> None:
        """Reject every call (state FORCED_OPEN) until :meth:`reset`."""
        self._core.force_open()

    def disable(self) -> None:
        """Let every call through and record nothing (state DISABLED) until :meth:`reset`."""
        self._core.disable()

    def reset(self) -> None:
        """Close the circuit with an empty window and forget past openings."""
        self._core.reset()

    # -- calling through the breaker -----------------------------------------
    #
    # The paths below are the hot path of every protected call, so they read the
    # core's fast-path fields directly instead of calling into it: admission
    # while CLOSED is one attribute read, a success in a count window is one
    # `next()`. Everything else goes through the core's methods.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises:
            CircuitOpenError: The circuit is open; ``fn`` was not called.
        """
        core = self._core
        permit = core._admit
        if permit is None:
            t = self._now()
            if t < core._reject_until:
                raise core.rejection(t)
            permit = core._acquire_slow()
        t0 = self._now() if self._timed else 0.0
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            core.on_error(permit, exc, self._now() - t0 if self._timed else 0.0)
            raise
        except BaseException:
            core.release(permit)
            raise
        if core._judge is not None:
            core.on_result(permit, result, self._now() - t0 if self._timed else 0.0)
        elif permit != core._tick_gen or self._timed:
            core.on_success(permit, self._now() - t0 if self._timed else 0.0)
        elif self._tick() == core._eval_at:  # type: ignore[misc]
            core.on_minimum_calls(permit)
        return result

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises:
            CircuitOpenError: The circuit is open; ``fn`` was not called.
        """
        core = self._core
        permit = core._admit
        if permit is None:
            t = self._now()
            if t < core._reject_until:
                raise core.rejection(t)
            permit = core._acquire_slow()
        t0 = self._now() if self._timed else 0.0
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            core.on_error(permit, exc, self._now() - t0 if self._timed else 0.0)
            raise
        except BaseException:
            core.release(permit)
            raise
        if core._judge is not None:
            core.on_result(permit, result, self._now() - t0 if self._timed else 0.0)
        elif permit != core._tick_gen or self._timed:
            core.on_success(permit, self._now() - t0 if self._timed else 0.0)
        elif self._tick() == core._eval_at:  # type: ignore[misc]
            core.on_minimum_calls(permit)
        return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so every call goes through the breaker.

        Raises:
            TypeError: ``fn`` is a generator or async generator function: its
                errors would escape the breaker (decorate what consumes it).
        """
        _validate.refuse_generators(fn, f"CircuitBreaker {self.name!r}")
        if inspect.iscoroutinefunction(fn):
            return self._wrap_async(fn)
        return self._wrap_sync(fn)

    # The wrappers repeat call() / call_async() instead of delegating to them:
    # one Python frame less is a third of the breaker's cost per call.

    def _wrap_async(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        core = self._core
        now = self._now
        tick = self._tick
        timed = self._timed
        judge = core._judge

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            permit = core._admit
            if permit is None:
                t = now()
                if t < core._reject_until:
                    raise core.rejection(t)
                permit = core._acquire_slow()
            t0 = now() if timed else 0.0
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                core.on_error(permit, exc, now() - t0 if timed else 0.0)
                raise
            except BaseException:
                core.release(permit)
                raise
            if judge is not None:
                core.on_result(permit, result, now() - t0 if timed else 0.0)
            elif permit != core._tick_gen or timed:
                core.on_success(permit, now() - t0 if timed else 0.0)
            elif tick() == core._eval_at:  # type: ignore[misc]
                core.on_minimum_calls(permit)
            return result

        return async_wrapper

    def _wrap_sync(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        core = self._core
        now = self._now
        tick = self._tick
        timed = self._timed
        judge = core._judge

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            permit = core._admit
            if permit is None:
                t = now()
                if t < core._reject_until:
                    raise core.rejection(t)
                permit = core._acquire_slow()
            t0 = now() if timed else 0.0
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                core.on_error(permit, exc, now() - t0 if timed else 0.0)
                raise
            except BaseException:
                core.release(permit)
                raise
            if judge is not None:
                core.on_result(permit, result, now() - t0 if timed else 0.0)
            elif permit != core._tick_gen or timed:
                core.on_success(permit, now() - t0 if timed else 0.0)
            elif tick() == core._eval_at:  # type: ignore[misc]
                core.on_minimum_calls(permit)
            return result

        return wrapper

    # A with-block's permit lives in a context variable, not on self: threads
    # and tasks each have their own context, and nesting keeps a small stack.

    def __enter__(self) -> None:
        core = self._core
        permit = core._admit
        if permit is None:
            t = self._now()
            if t < core._reject_until:
                raise core.rejection(t)
            permit = core._acquire_slow()
        cv = self._cv
        cv.set((permit, self._now() if self._timed else 0.0, cv.get(None)))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cv = self._cv
        permit, t0, outer = cv.get()
        cv.set(outer)
        core = self._core
        if exc is not None:
            core.on_error(permit, exc, self._now() - t0 if self._timed else 0.0)
        elif permit != core._tick_gen or self._timed:
            core.on_success(permit, self._now() - t0 if self._timed else 0.0)
        elif self._tick() == core._eval_at:  # type: ignore[misc]
            core.on_minimum_calls(permit)

    # Written out rather than delegating to __enter__/__exit__: a frame less.

    async def __aenter__(self) -> None:
        core = self._core
        permit = core._admit
        if permit is None:
            t = self._now()
            if t < core._reject_until:
                raise core.rejection(t)
            permit = core._acquire_slow()
        cv = self._cv
        cv.set((permit, self._now() if self._timed else 0.0, cv.get(None)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cv = self._cv
        permit, t0, outer = cv.get()
        cv.set(outer)
        core = self._core
        if exc is not None:
            core.on_error(permit, exc, self._now() - t0 if self._timed else 0.0)
        elif permit != core._tick_gen or self._timed:
            core.on_success(permit, self._now() - t0 if self._timed else 0.0)
        elif self._tick() == core._eval_at:  # type: ignore[misc]
            core.on_minimum_calls(permit)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._core.state.name}>"
