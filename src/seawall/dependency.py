"""Dependency: one named downstream and its policies, composed in the right order.

A service has a handful of dependencies, and each deserves its own treatment:
payment is critical (no answer is better than a wrong one), recommendations
are degradable (the popular items will do), notifications are background (the
user must not wait for them). A :class:`Dependency` names one downstream and
runs every call to it through its policies, outermost first::

    fallback -> retry -> breaker -> bulkhead -> timeout -> fn

all inside the ambient deadline. The order matters: the breaker sees every
attempt (so retries of a failing service open it sooner) but a rejection by an
open breaker or a full bulkhead is never retried; the timeout bounds each
attempt, the deadline all of them; the fallback only sees the final outcome.

What happens when the call finally fails depends on the dependency's
:class:`Criticality`:

* ``CRITICAL`` -- the failure surfaces as
  :class:`~seawall.errors.DependencyUnavailable` (an HTTP 503 with
  ``Retry-After`` in the ASGI integration), carrying the cause and, when known,
  when to try again.
* ``DEGRADABLE`` -- the :class:`~seawall.fallback.Fallback` answers, and the
  answer is marked as degraded (see :mod:`seawall.fallback`).
* ``BACKGROUND`` -- calls are not made inline at all: :meth:`Dependency.send`
  writes the event to a durable :class:`~seawall.outbox.Outbox` and returns;
  the outbox's worker delivers it through the dependency's policies.

Only failures that mean "unavailable" are turned into ``DependencyUnavailable``
or answered by a fallback: rejections, timeouts, and whatever ``unavailable_on``
accepts (by default :data:`~seawall.retry.transient`: connection errors and
408/429/5xx statuses). Any other exception -- a 400, a ``ValueError`` from a
bug -- propagates unchanged: it is an answer or a defect, not an outage, and
hiding it behind a fallback would hide the defect.

A call that ends because the *caller's* deadline ran out (the ambient one,
:func:`seawall.deadline`, has passed) raises the
:class:`~seawall.errors.DeadlineExceeded` itself, not ``DependencyUnavailable``:
a budget the caller spent says nothing about the dependency (its breaker is
not told either), and the answer is a 504, not a 503 that names it. A
DEGRADABLE dependency's fallback still answers: it costs no time.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import enum
import functools
import inspect
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast, overload

from seawall import _expiry as expiry_module
from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall._expiry import Expiry
from seawall.adaptive import AdaptiveLimit, dropped
from seawall.breaker import CircuitBreaker
from seawall.bulkhead import Bulkhead, ThreadBulkhead
from seawall.core.backoff import retry_after_of
from seawall.core.breaker_state import PROBE
from seawall.core.limit import Aimd
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceeded,
    DependencyUnavailable,
    RejectedError,
)
from seawall.events import LISTENERS, CallCompleted, FallbackFailed, FallbackUsed, Listeners
from seawall.fallback import (
    AsyncStaleStore,
    Degraded,
    Fallback,
    Result,
    StaleStore,
    current_degradations,
    default_key,
)
from seawall.outbox import Outbox, OutboxEntry
from seawall.retry import Retry, transient
from seawall.throttle import Throttle
from seawall.timeouts import close_scope, current_deadline, expired, open_scope
from seawall.waits import current_waits as _current_waits

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from datetime import timedelta

__all__ = ["Criticality", "Dependency", "DependencyConfig", "is_unavailable"]

P = ParamSpec("P")
R = TypeVar("R")

_monotonic = time.monotonic
_log = logging.getLogger("seawall.dependency")
_AsyncioTimeout = asyncio.Timeout
_Cancelled = asyncio.CancelledError
_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task
_STATE, _CANCELLING, _FIRED = expiry_module.STATE, expiry_module.CANCELLING, expiry_module.FIRED


class Criticality(enum.Enum):
    """How much a service needs a dependency, which decides what its failure does."""

    CRITICAL = "critical"
    """No answer without it: failure surfaces as ``DependencyUnavailable``."""
    DEGRADABLE = "degradable"
    """A fallback answers when it fails, and the answer is marked degraded."""
    BACKGROUND = "background"
    """Fire and forget through a durable outbox: callers never wait for it."""


def is_unavailable(exc: BaseException) -> bool:
    """Return whether ``exc`` means the dependency is unavailable (the default test).

    True for rejections (open circuit, full bulkhead), timeouts, another
    dependency's ``DependencyUnavailable`` (a layer below gave up), and what
    :data:`~seawall.retry.transient` accepts: connection errors and the HTTP
    statuses 408, 429, 500, 502, 503 and 504.
    """
    return isinstance(exc, (RejectedError, TimeoutError, DependencyUnavailable)) or transient(exc)


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencyConfig:
    """The validated, immutable configuration of a :class:`Dependency`.

    Fields are documented on :class:`Dependency`. Building one with a bad
    combination raises :class:`~seawall.errors.ConfigError` naming each field.
    """

    criticality: Criticality = Criticality.CRITICAL
    timeout: float | None = None
    retry: Retry | None = None
    breaker: CircuitBreaker | None = None
    bulkhead: Bulkhead | ThreadBulkhead | AdaptiveLimit | None = None
    fallback: Fallback | None = None
    outbox: Outbox | None = None
    throttle: Throttle | None = None

    def __post_init__(self) -> None:
        errors: list[str] = []
        crit: object = self.criticality
        if not isinstance(crit, Criticality):
            errors.append(f"criticality must be a Criticality, got {crit!r}")
        if self.timeout is not None:
            errors += _validate.duration("timeout", self.timeout, allow_zero=False)
        errors += self._wrong_types()
        errors += self._limit_within_timeout()
        if crit is Criticality.DEGRADABLE and self.fallback is None:
            errors.append(
                "fallback is required for a DEGRADABLE dependency "
                "(Fallback.value, Fallback.call or Fallback.stale)"
            )
        if crit is Criticality.CRITICAL and self.fallback is not None:
            errors.append(
                "fallback must be None for a CRITICAL dependency: make it DEGRADABLE "
                "if a fallback answer is acceptable"
            )
        if crit is Criticality.BACKGROUND:
            if self.outbox is None:
                errors.append("outbox is required for a BACKGROUND dependency")
            if self.fallback is not None:
                errors.append("fallback must be None for a BACKGROUND dependency")
        elif self.outbox is not None:
            errors.append("outbox is only for a BACKGROUND dependency")
        _validate.fail_if(errors)

    def _limit_within_timeout(self) -> list[str]:
        # The timeout hierarchy, one level in: an AIMD limit learns of overload
        # from calls slower than its own timeout, so that must come before the
        # attempt's timeout cuts them short (then it would learn only from drops).
        limit, timeout = self.bulkhead, self.timeout
        if not isinstance(limit, AdaptiveLimit) or timeout is None:
            return []
        algo = limit.algorithm
        if isinstance(algo, Aimd) and algo.config.timeout >= timeout:
            own = algo.config.timeout
            message = (
                f"bulkhead: the adaptive limit's timeout ({own:.3g}s) must be shorter"
                f" than the dependency's timeout ({timeout:.3g}s)"
            )
            return [message]
        return []

    def _wrong_types(self) -> list[str]:
        errors = []
        for field, kind in (
            ("retry", Retry),
            ("breaker", CircuitBreaker),
            ("bulkhead", (Bulkhead, ThreadBulkhead, AdaptiveLimit)),
            ("fallback", Fallback),
            ("outbox", Outbox),
            ("throttle", Throttle),
        ):
            value = getattr(self, field)
            if value is not None and not isinstance(value, kind):
                errors.append(f"{field} must be a {_kind_name(kind)}, got {value!r}")
        return errors


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


class Dependency:
    """One named downstream with its policies: call it through here.

    Args:
        name: The dependency's name, used in errors, events and metrics.
        criticality: What its failure does; see :class:`Criticality`.
        timeout: Seconds allowed per attempt (> 0), never more than the ambient
            deadline leaves. Async calls are interrupted when it runs out; sync
            calls cannot be (see :func:`seawall.deadline`) and get it as the
            ambient deadline, for their client's own timeout.
        retry: The retry policy for attempts that fail transiently.
        breaker: The circuit breaker every attempt goes through.
        bulkhead: Caps concurrent attempts: a :class:`~seawall.bulkhead.Bulkhead`
            for :meth:`call`, a :class:`~seawall.bulkhead.ThreadBulkhead` for
            :meth:`call_sync`, or an :class:`~seawall.adaptive.AdaptiveLimit`
            for both, whose limit moves with what each attempt measured (its
            round-trip time; a drop when it timed out or was refused with 429
            or 503).
        throttle: Client-side adaptive throttling of the attempts
            (:class:`~seawall.throttle.Throttle`), outside the breaker: it
            sheds a share of attempts as the dependency refuses a share. Calls
            the breaker or the bulkhead refuse, and cancelled ones, are not
            counted in its window.
        fallback: For DEGRADABLE dependencies (required there, refused elsewhere).
        outbox: For BACKGROUND dependencies (required there, refused elsewhere):
            where :meth:`send` writes. Its deliveries go through this
            dependency's breaker, bulkhead and timeout; the outbox itself
            retries them with backoff.
        unavailable_on: Which failures mean "unavailable" (and so become
            ``DependencyUnavailable`` or use the fallback): a predicate.
            Default :func:`is_unavailable`. Others propagate unchanged.
        clock: Time source for durations and stale ages; default the real clock.
        listeners: Where events go; default :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: A bad option or combination; the message names each.
    """

    __slots__ = (
        "__weakref__",
        "_breaker",
        "_bulkhead",
        "_expiry",
        "_fallback",
        "_limit",
        "_listeners",
        "_now",
        "_plain",
        "_retry",
        "_stale",
        "_throttle",
        "_timeout",
        "_unavailable",
        "config",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        criticality: Criticality = Criticality.CRITICAL,
        timeout: float | timedelta | None = None,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | ThreadBulkhead | AdaptiveLimit | None = None,
        fallback: Fallback | None = None,
        outbox: Outbox | None = None,
        throttle: Throttle | None = None,
        unavailable_on: Callable[[BaseException], bool] = is_unavailable,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            _validate.fail_if([f"name must be a non-empty string, got {name!r}"])
        predicate: object = unavailable_on  # typed, but callers may not be
        if not callable(predicate):
            _validate.fail_if([f"unavailable_on must be callable, got {predicate!r}"])
        self.name = name
        self.config = DependencyConfig(
            criticality=criticality,
            timeout=None if timeout is None else _validate.seconds(timeout),
            retry=retry,
            breaker=breaker,
            bulkhead=bulkhead,
            fallback=fallback,
            outbox=outbox,
            throttle=throttle,
        )
        self._timeout = self.config.timeout
        self._expiry: Expiry | None = None
        self._retry = None if retry is None else _named(retry, name)
        self._breaker = breaker
        # An adaptive limit takes the bulkhead's place, but is released with
        # what the attempt measured: it has a slot of its own.
        limit = bulkhead if isinstance(bulkhead, AdaptiveLimit) else None
        self._limit = limit
        self._bulkhead = None if limit is not None else bulkhead
        self._throttle = throttle
        # No adaptive policy: the attempt may take the inlined fast path.
        self._plain = limit is None and throttle is None
        self._fallback = fallback
        self._stale = fallback if fallback is not None and fallback.kind == "stale" else None
        self._unavailable = unavailable_on
        self._now = (clock or MONOTONIC).monotonic
        self._listeners = LISTENERS if listeners is None else listeners
        if outbox is not None:
            wanted = Bulkhead if outbox._deliver_is_async else ThreadBulkhead
            if self._bulkhead is not None and not isinstance(self._bulkhead, wanted):
                what = "async" if outbox._deliver_is_async else "sync"
                _validate.fail_if(
                    [f"bulkhead must be a {wanted.__name__} for a {what} deliver, got {bulkhead!r}"]
                )
            outbox._guard_delivery(self._guarded_delivery)

    @property
    def criticality(self) -> Criticality:
        """The dependency's :class:`Criticality`."""
        return self.config.criticality

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker, if any (readiness checks read its state)."""
        return self._breaker

    @property
    def retry(self) -> Retry | None:
        """The retry policy, if any (named after the dependency when it had the default name)."""
        return self._retry

    @property
    def bulkhead(self) -> Bulkhead | ThreadBulkhead | AdaptiveLimit | None:
        """The bulkhead or adaptive limit, if any."""
        return self.config.bulkhead

    @property
    def limit(self) -> AdaptiveLimit | None:
        """The adaptive limit, if the bulkhead is one."""
        return self._limit

    @property
    def throttle(self) -> Throttle | None:
        """The client-side throttle, if any."""
        return self._throttle

    @property
    def outbox(self) -> Outbox | None:
        """The outbox of a BACKGROUND dependency."""
        return self.config.outbox

    def without_retry(self) -> Dependency:
        """Return a twin sharing every policy, listener and clock of this one, but no retry.

        For calls that must be made at most once (a POST without an idempotency
        key): they still pass the breaker, bulkhead and timeout, and still count
        in the breaker's window.
        """
        if self._retry is None:
            return self
        twin = copy.copy(self)
        twin._retry = None
        twin.config = dataclasses.replace(self.config, retry=None)
        return twin

    # -- async -----------------------------------------------------------------

    async def call(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through every policy and return its answer.

        For a DEGRADABLE dependency the answer may come from the fallback; use
        :meth:`call_result` to be told.

        Raises:
            DependencyUnavailable: A CRITICAL dependency is unavailable, or a
                DEGRADABLE one's fallback could not answer.
            Exception: A failure that does not mean "unavailable", unchanged.
        """
        return (await self._call(fn, args, kwargs))[0]  # type: ignore[no-any-return]

    async def call_result(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Result[R]:
        """Like :meth:`call`, but say whether the answer is degraded."""
        value, degraded = await self._call(fn, args, kwargs)
        return Result(value, degraded)

    async def _call(  # noqa: C901 - inlined retry: a coroutine frame less per call
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Degraded | None]:
        waits = _current_waits()
        if waits is not None:
            # Time in a dependency is not the service's own (see seawall.waits).
            waits.enter(self._now())
        try:
            self._refuse_background()
            if self._bulkhead is not None and not isinstance(self._bulkhead, Bulkhead):
                raise _wrong_bulkhead(self.name, "call", "Bulkhead")
            listeners = self._listeners
            # Measured only if someone listens; None: nobody did when it started.
            started = self._now() if listeners._registrations else None
            retry = self._retry
            try:
                if retry is None:
                    result = await self._attempt(fn, args, kwargs)
                else:
                    # Retry.call_async, inlined: the first attempt is awaited here,
                    # and only a retry enters the retry loop. Each coroutine frame
                    # held by a waiting call is memory the collector walks, which
                    # is most of the cost with thousands of calls in flight.
                    deposit = retry._deposit
                    if deposit is not None:
                        deposit()
                    start = retry._now() if retry.config.max_elapsed is not None else None
                    first: Exception | None = None
                    try:
                        result = await self._attempt(fn, args, kwargs)
                    except Exception as exc:
                        if not retry._retryable(exc):
                            raise
                        first, result = exc, None
                    # Retried outside the except block, as Retry.call_async does:
                    # later errors must not chain to the first one as their context.
                    if first is not None or (
                        retry.config.on_result is not None and retry.config.on_result(result)
                    ):
                        result = await retry._again_async(
                            self._attempt, (fn, args, kwargs), {}, first, result, start=start
                        )
            except Exception as exc:
                return await self._answer_failure(exc, started, fn, args, kwargs)
            stale = self._stale
            if stale is not None:
                await _remember_async(stale, fn, args, kwargs, result)
            self._completed(started, "success")
            return result, None
        finally:
            if waits is not None:
                waits.leave(self._now())

    def _raise_unless_fallback(self, exc: Exception, started: float | None) -> None:
        """Raise what a failed call ends in, unless its fallback is to answer.

        An answer or a defect propagates as it is; an outage with no fallback
        is ``DependencyUnavailable``, or the caller's own ``DeadlineExceeded``.
        """
        if not self._unavailable(exc):
            self._completed(started, "failure")
            raise exc
        if self._fallback is None:
            self._completed(started, _outcome(exc))
            if _caller_ran_out(exc):
                raise exc
            raise self._unavailable_error(exc) from exc

    async def _answer_failure(
        self,
        exc: Exception,
        started: float | None,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Degraded | None]:
        """After the policies failed: raise the error as it is or as unavailable, or fall back."""
        self._raise_unless_fallback(exc, started)
        try:
            answer = await self._fall_back_async(exc, fn, args, kwargs)
        except BaseException:
            # The fallback could not answer: the call ends as its failure did.
            self._completed(started, _outcome(exc))
            raise
        self._completed(started, "fallback")
        return answer

    async def _attempt(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """One attempt: breaker, then bulkhead, then timeout, then ``fn``.

        Under the dependency's own timeout (the usual case) the attempt runs
        here, on the dependency's shared :class:`Expiry`: its deadlines are all
        ``timeout`` after their start, so one loop timer serves every attempt
        in flight (see :mod:`seawall._expiry`), at a fraction of what an
        ``asyncio.Timeout`` per attempt costs. Other cases go to
        :meth:`_guarded`.
        """
        scope = open_scope(self._timeout)
        if scope is None:
            return await self._guarded(fn, args, kwargs, None, 0.0, cut_short=False)
        when, budget, token = scope
        try:
            if budget <= 0.0:
                # The caller's deadline has passed: not worth starting, and no
                # reflection on the dependency's health (its breaker is untouched).
                raise expired(self.name, 0.0, self._listeners)
            loop = _get_running_loop()
            task = _current_task(loop)
            if token is None or task is None or not self._plain:
                # token is None when the ambient deadline was tighter than our
                # own timeout: an expiry then says the caller ran short, not
                # that the dependency is slow, so it counts for nothing in the
                # breaker. (No task: asyncio.Timeout will say what is wrong.)
                cut_short = token is None and self._timeout is not None
                return await self._guarded(fn, args, kwargs, when, budget, cut_short=cut_short)
            # The head of _guarded, written out again: a coroutine frame less
            # per call is a fifth of the pipeline's cost with calls waiting.
            breaker = self._breaker
            permit = 0 if breaker is None else _admit(breaker)
            bulkhead = self._bulkhead
            if bulkhead is not None:
                try:
                    await bulkhead.acquire()  # type: ignore[misc] # checked by _call
                except BaseException:
                    # A full bulkhead says nothing about the dependency's health.
                    _release(breaker, permit)
                    raise
                self._check_time_left(permit, when)
            t0 = self._now() if breaker is not None and breaker._timed else 0.0
            expiry = self._expiry
            if expiry is None or expiry.loop is not loop:
                # One per loop; a dependency shared by several loops' threads
                # swaps it, which only costs a fresh queue and timer.
                expiry = self._expiry = Expiry(loop)
            entry = expiry.start(when, task)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                fired = entry[_STATE] == _FIRED
                expiry.finish(entry)
                self._attempt_failed(exc, entry, fired=fired, task=task, permit=permit, t0=t0)
            if entry[_STATE] == _FIRED:
                task.uncancel()  # fn swallowed our cancellation and returned
            expiry.finish(entry)
            self._after_success(permit, t0, result)
            return result
        finally:
            close_scope(token)

    def _check_time_left(self, permit: int, when: float | None) -> None:
        """After waiting for a permit: if the attempt's time is gone, give both back and stop.

        Starting ``fn`` with no time left would only time it out (and count a
        failure against the dependency for a wait that was the caller's).
        """
        if when is not None and _monotonic() >= when:
            cast("Bulkhead | ThreadBulkhead", self._bulkhead).release()
            _release(self._breaker, permit)
            raise expired(self.name, 0.0, self._listeners)

    def _admit_adaptive(self, *, on_loop: bool) -> int:
        """Throttle, breaker, limit: the head of an attempt with adaptive policies.

        Args:
            on_loop: Whether this is the async pipeline: the limit's permit is
                then taken as its async paths take it, without its lock.

        Returns:
            The breaker's permit.
        """
        throttle = self._throttle
        breaker = self._breaker
        # The throttle trims partial failures while the breaker is closed; an
        # open or half-open breaker is in charge of a whole outage, and its
        # probes must not be shed. A call refused further in (an open breaker,
        # the limit) never reached the backend: it is not recorded either.
        if throttle is not None and (breaker is None or breaker._core._admit is not None):
            throttle.admit()
        permit = 0 if breaker is None else _admit(breaker)
        limit = self._limit
        if limit is not None:
            if on_loop and limit._in < limit._limit:
                limit._in += 1
                limit._calls += 1
                return permit
            try:
                limit.acquire()
            except BaseException:
                _release(breaker, permit)
                raise
        return permit

    def _attempt_failed(
        self,
        exc: BaseException,
        entry: list[Any],
        *,
        fired: bool,
        task: asyncio.Task[Any],
        permit: int,
        t0: float,
    ) -> NoReturn:
        """End an attempt on the shared expiry that raised ``exc``, and raise what it means."""
        # As asyncio.Timeout does: our cancellation becomes a timeout only if
        # nobody else asked for one meanwhile.
        if fired and task.uncancel() <= entry[_CANCELLING] and type(exc) is _Cancelled:
            timed_out = expired(self.name, cast("float", self._timeout), self._listeners)
            self._after_error(permit, timed_out, t0)
            raise timed_out from exc
        if isinstance(exc, Exception):
            self._after_error(permit, exc, t0)
        else:
            self._after_abort(permit)
        raise exc

    async def _guarded(  # noqa: C901, PLR0912 - one frame for the attempt, head to tail
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        when: float | None,
        budget: float,
        *,
        cut_short: bool,
    ) -> Any:
        breaker = self._breaker
        if self._plain:
            permit = 0 if breaker is None else _admit(breaker)
        else:
            permit = self._admit_adaptive(on_loop=True)
        bulkhead = self._bulkhead
        if bulkhead is not None:
            try:
                await bulkhead.acquire()  # type: ignore[misc] # checked by _call
            except BaseException:
                # A full bulkhead says nothing about the dependency's health.
                _release(breaker, permit)
                raise
            self._check_time_left(permit, when)
        timed = not self._plain or (breaker is not None and breaker._timed)
        t0 = self._now() if timed else 0.0
        try:
            if when is None:
                result = await fn(*args, **kwargs)
            else:
                timer = _AsyncioTimeout(when)
                try:
                    async with timer:
                        result = await fn(*args, **kwargs)
                except TimeoutError as exc:
                    if not timer.expired():
                        raise  # fn's own TimeoutError, not our scope's
                    raise expired(self.name, budget, self._listeners) from exc
        except DeadlineExceeded as exc:
            if cut_short:
                self._after_abort(permit)
            else:
                self._after_error(permit, exc, t0)
            raise
        except Exception as exc:
            self._after_error(permit, exc, t0)
            raise
        except BaseException:
            self._after_abort(permit)
            raise
        self._after_success(permit, t0, result)
        return result

    # The ends of an attempt, shared by the sync and async paths.

    def _after_success(self, permit: int, t0: float, result: object) -> None:
        bulkhead = self._bulkhead
        if bulkhead is not None:
            bulkhead.release()
        breaker = self._breaker
        if self._plain:
            if breaker is not None:
                core = breaker._core
                elapsed = self._now() - t0 if breaker._timed else 0.0
                if core._judge is None:
                    core.on_success(permit, elapsed)
                else:
                    core.on_result(permit, result, elapsed)
            return
        elapsed = self._now() - t0
        if breaker is not None:
            breaker._core.on_result(permit, result, elapsed)
        limit = self._limit
        if limit is not None:
            limit.release(elapsed)
        throttle = self._throttle
        if throttle is not None:
            if permit >= PROBE:
                # A probe: the breaker decides. Once it closes, the refusals the
                # throttle saw before it opened belong to the outage it ended.
                if breaker is not None and breaker._core._admit is not None:
                    throttle.reset()
            else:
                throttle.record()

    def _after_error(self, permit: int, exc: Exception, t0: float) -> None:
        bulkhead = self._bulkhead
        if bulkhead is not None:
            bulkhead.release()
        breaker = self._breaker
        if self._plain:
            if breaker is not None:
                breaker._core.on_error(permit, exc, self._now() - t0 if breaker._timed else 0.0)
            return
        elapsed = self._now() - t0
        if breaker is not None:
            breaker._core.on_error(permit, exc, elapsed)
        limit = self._limit
        if limit is not None:
            # A failure of the call's own (a 404, a bug) says nothing of the load.
            if dropped(exc):
                limit.release(elapsed, dropped=True)
            else:
                limit.release()
        throttle = self._throttle
        if throttle is not None and permit < PROBE:
            throttle.record(exc)

    def _after_abort(self, permit: int) -> None:
        # Cancelled or interrupted: neither success nor failure.
        bulkhead = self._bulkhead
        if bulkhead is not None:
            bulkhead.release()
        _release(self._breaker, permit)
        limit = self._limit
        if limit is not None:
            limit.release()

    async def _fall_back_async(
        self,
        exc: Exception,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Degraded]:
        fallback = cast("Fallback", self._fallback)
        try:
            if fallback.kind == "stale":
                found = await _recall_async(fallback, fn, args, kwargs)
                value, age = self._fresh_enough(fallback, found)
            else:
                value, age = _static_or_called(fallback, exc), None
                if inspect.isawaitable(value):
                    value = await value
        except Exception as error:
            failed = self._fallback_failed(fallback, exc, error)
            if failed is exc:
                raise exc from exc.__cause__  # the caller ran out of time; see its note
            raise failed from exc
        return value, self._degraded(fallback, exc, age)

    # -- sync ------------------------------------------------------------------

    def call_sync(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through every policy and return its answer.

        The timeout cannot interrupt sync code: it is set as the ambient
        deadline, so ``fn`` can pass :func:`seawall.remaining` to its client.

        Raises:
            DependencyUnavailable: A CRITICAL dependency is unavailable, or a
                DEGRADABLE one's fallback could not answer.
            Exception: A failure that does not mean "unavailable", unchanged.
        """
        return self._call_sync(fn, args, kwargs)[0]  # type: ignore[no-any-return]

    def call_sync_result(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Result[R]:
        """Like :meth:`call_sync`, but say whether the answer is degraded."""
        value, degraded = self._call_sync(fn, args, kwargs)
        return Result(value, degraded)

    def _call_sync(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Degraded | None]:
        waits = _current_waits()
        if waits is not None:
            # Time in a dependency is not the service's own (see seawall.waits).
            waits.enter(self._now())
        try:
            self._refuse_background()
            if self._bulkhead is not None and not isinstance(self._bulkhead, ThreadBulkhead):
                raise _wrong_bulkhead(self.name, "call_sync", "ThreadBulkhead")
            listeners = self._listeners
            # Measured only if someone listens; None: nobody did when it started.
            started = self._now() if listeners._registrations else None
            try:
                if self._retry is None:
                    result = self._attempt_sync(fn, args, kwargs)
                else:
                    result = self._retry.call(self._attempt_sync, fn, args, kwargs)
            except Exception as exc:
                return self._answer_failure_sync(exc, started, fn, args, kwargs)
            stale = self._stale
            if stale is not None:
                _remember_sync(stale, fn, args, kwargs, result)
            self._completed(started, "success")
            return result, None
        finally:
            if waits is not None:
                waits.leave(self._now())

    def _answer_failure_sync(
        self,
        exc: Exception,
        started: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Degraded | None]:
        """:meth:`_answer_failure` for the sync path."""
        self._raise_unless_fallback(exc, started)
        try:
            answer = self._fall_back_sync(exc, fn, args, kwargs)
        except BaseException:
            self._completed(started, _outcome(exc))  # as the async path
            raise
        self._completed(started, "fallback")
        return answer

    def _attempt_sync(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        ambient = current_deadline()
        if ambient is not None and ambient <= _monotonic():
            # Nothing left of the budget: not worth starting the call.
            raise DeadlineExceeded(name=self.name, timeout=0.0)
        breaker = self._breaker
        if self._plain:
            permit = 0 if breaker is None else _admit(breaker)
        else:
            permit = self._admit_adaptive(on_loop=False)
        # The timeout cannot interrupt sync code: it becomes the ambient
        # deadline, which bounds the bulkhead's wait and which fn can pass to
        # its client (seawall.remaining()).
        scope = None if self._timeout is None else open_scope(self._timeout)
        token = None if scope is None else scope[2]
        try:
            bulkhead = self._bulkhead
            if bulkhead is not None:
                try:
                    bulkhead.acquire()  # checked by _call_sync
                except BaseException:
                    _release(breaker, permit)
                    raise
                self._check_time_left(permit, current_deadline())
            timed = not self._plain or (breaker is not None and breaker._timed)
            t0 = self._now() if timed else 0.0
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self._after_error(permit, exc, t0)
                raise
            except BaseException:
                self._after_abort(permit)
                raise
        finally:
            close_scope(token)
        self._after_success(permit, t0, result)
        return result

    def _fall_back_sync(
        self,
        exc: Exception,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Degraded]:
        fallback = cast("Fallback", self._fallback)
        try:
            if fallback.kind == "stale":
                store = fallback.store
                if not isinstance(store, StaleStore):
                    msg = f"the stale store of {self.name!r} is async-only: use call()"
                    raise TypeError(msg)  # noqa: TRY301 - reported as the fallback's failure
                found = store.get(_key(fallback, fn, args, kwargs))
                value, age = self._fresh_enough(fallback, found)
            else:
                value, age = _static_or_called(fallback, exc), None
                if inspect.isawaitable(value):
                    close = getattr(value, "close", None)
                    if close is not None:
                        close()  # never leave an un-awaited coroutine behind
                    msg = f"the fallback of {self.name!r} is async: use call(), not call_sync()"
                    raise TypeError(msg)  # noqa: TRY301 - reported as the fallback's failure
        except Exception as error:
            failed = self._fallback_failed(fallback, exc, error)
            if failed is exc:
                raise exc from exc.__cause__  # the caller ran out of time; see its note
            raise failed from exc
        return value, self._degraded(fallback, exc, age)

    # -- decorator ----------------------------------------------------------------

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function: async ones go through :meth:`call`, sync ones :meth:`call_sync`.

        Raises:
            TypeError: ``fn`` is a generator or async generator function: its
                errors would escape the policies (decorate what consumes it).
        """
        self._refuse_background()
        _validate.refuse_generators(fn, f"Dependency {self.name!r}")
        if inspect.iscoroutinefunction(fn):
            call = self.call

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await call(fn, *args, **kwargs)

            return async_wrapper
        call_sync = self.call_sync

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call_sync(fn, *args, **kwargs)

        return wrapper

    # -- background ---------------------------------------------------------------

    def send(self, topic: str, payload: object) -> str | None:
        """Write an event for a BACKGROUND dependency to its outbox, durably, and return.

        The caller never waits for delivery and never sees it fail; see
        :meth:`seawall.outbox.Outbox.put` for what is stored.

        Returns:
            The event's id (receivers deduplicate on it), or ``None`` if the
            outbox dropped it (full, or storage failing), which is reported.
        """
        return self._outbox_of("send").put(topic, payload)

    async def send_async(self, topic: str, payload: object) -> str | None:
        """Like :meth:`send`, without blocking the event loop on the disk."""
        return await self._outbox_of("send_async").put_async(topic, payload)

    def _outbox_of(self, method: str) -> Outbox:
        outbox = self.config.outbox
        if outbox is None:
            kind = self.criticality.name
            msg = f"{method}() is for BACKGROUND dependencies; {self.name!r} is {kind}"
            raise TypeError(msg)
        return outbox

    def _refuse_background(self) -> None:
        if self.config.outbox is not None:
            msg = f"{self.name!r} is a BACKGROUND dependency: use send() or send_async()"
            raise TypeError(msg)

    def _guarded_delivery(
        self, deliver: Callable[[OutboxEntry], Any], is_async: bool
    ) -> Callable[[OutboxEntry], Any]:
        """Wrap the outbox's ``deliver`` in this dependency's breaker, bulkhead and timeout."""
        if is_async:

            async def deliver_async(entry: OutboxEntry) -> Any:
                return await self._attempt(deliver, (entry,), {})

            return deliver_async

        def deliver_sync(entry: OutboxEntry) -> Any:
            return self._attempt_sync(deliver, (entry,), {})

        return deliver_sync

    # -- failure, fallback and events ----------------------------------------------

    def _unavailable_error(self, exc: BaseException) -> DependencyUnavailable:
        retry_after = exc.retry_after if isinstance(exc, CircuitOpenError) else retry_after_of(exc)
        return DependencyUnavailable(name=self.name, cause=exc, retry_after=retry_after)

    def _fresh_enough(
        self, fallback: Fallback, found: tuple[Any, float] | None
    ) -> tuple[Any, float]:
        if found is None:
            msg = f"no stale value of {self.name!r} for these arguments"
            raise LookupError(msg)
        value, age = found
        if age > fallback.max_stale:
            msg = (
                f"the stale value of {self.name!r} is {age:.3g}s old"
                f" (max_stale {fallback.max_stale:.3g}s)"
            )
            raise LookupError(msg)
        return value, age

    def _degraded(self, fallback: Fallback, exc: BaseException, age: float | None) -> Degraded:
        degraded = Degraded(self.name, fallback.kind, age, type(exc).__name__)
        record = current_degradations()
        if record is not None:
            record.add(degraded)
        listeners = self._listeners
        if listeners._registrations:
            listeners.emit(
                FallbackUsed(name=self.name, at=self._now(), kind=fallback.kind, cause=exc, age=age)
            )
        return degraded

    def _fallback_failed(
        self, fallback: Fallback, exc: BaseException, error: BaseException
    ) -> BaseException:
        """Report a fallback that could not answer; return what to raise.

        ``exc`` itself when it is the caller's deadline running out (see
        :func:`_caller_ran_out`), else a ``DependencyUnavailable``.
        """
        # Never silent: an event for the exporters, and the fallback's error kept
        # on the raised exception for whoever logs it.
        listeners = self._listeners
        if listeners._registrations:
            listeners.emit(
                FallbackFailed(
                    name=self.name, at=self._now(), kind=fallback.kind, cause=exc, error=error
                )
            )
        if isinstance(exc, Exception) and _caller_ran_out(exc):
            exc.add_note(f"fallback ({fallback.kind}) could not answer: {error!r}")
            return exc
        unavailable = self._unavailable_error(exc)
        unavailable.add_note(f"fallback ({fallback.kind}) failed too: {error!r}")
        return unavailable

    def _completed(self, started: float | None, outcome: str) -> None:
        listeners = self._listeners
        # started is None when no one listened as the call began: a listener
        # added meanwhile would get a duration measured from nothing.
        if started is not None and listeners._registrations:
            listeners.emit(
                CallCompleted(
                    name=self.name,
                    at=self._now(),
                    outcome=outcome,
                    duration=self._now() - started,
                )
            )

    def __repr__(self) -> str:
        return f"<Dependency {self.name!r} {self.criticality.name}>"


def _named(retry: Retry, name: str) -> Retry:
    """Give a default-named retry policy the dependency's name, for its events."""
    if retry.name != "retry":
        return retry
    c = retry.config
    return Retry(
        attempts=c.attempts,
        backoff=c.backoff,
        on=c.on,
        on_result=c.on_result,
        max_elapsed=c.max_elapsed,
        respect_retry_after=c.respect_retry_after,
        budget=c.budget,
        reraise=c.reraise,
        name=name,
        clock=retry._clock,
        listeners=retry._listeners,
        random=retry._random,
    )


def _caller_ran_out(exc: Exception) -> bool:
    """Whether ``exc`` is the caller's deadline running out, not the dependency failing.

    Then the caller is told so (a ``DeadlineExceeded``: an HTTP 504), never
    that the dependency is unavailable (a 503 naming it, with a Retry-After
    that would send the client elsewhere for a fault that is its own budget).
    Called after the attempt's own scope closed, so the ambient deadline here
    is the caller's.
    """
    if not isinstance(exc, DeadlineExceeded):
        return False
    when = current_deadline()
    return when is not None and _monotonic() >= when


def _admit(breaker: CircuitBreaker) -> int:
    core = breaker._core
    permit = core._admit
    if permit is None:
        permit = core.acquire()
    return permit


def _release(breaker: CircuitBreaker | None, permit: int) -> None:
    if breaker is not None:
        breaker._core.release(permit)


def _wrong_bulkhead(name: str, method: str, wanted: str) -> TypeError:
    return TypeError(f"dependency {name!r}: {method}() needs a {wanted} as its bulkhead")


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, RejectedError):
        return "rejected"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "failure"


def _static_or_called(fallback: Fallback, exc: BaseException) -> Any:
    if fallback.kind == "value":
        return fallback.default
    return cast("Callable[[BaseException], Any]", fallback.fn)(exc)


def _key(
    fallback: Fallback, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    if fallback.key is not None:
        return fallback.key(*args, **kwargs)
    return default_key(fn, args, kwargs)


async def _remember_async(
    fallback: Fallback,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    value: Any,
) -> None:
    store = fallback.store
    remember = fallback.remember
    try:
        if remember is not None and not remember(value):
            return
        key = _key(fallback, fn, args, kwargs)
        if isinstance(store, AsyncStaleStore):
            await store.aput(key, value)
        elif store is not None:
            store.put(key, value)
    except Exception:
        _store_failed(store)


def _remember_sync(
    fallback: Fallback,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    value: Any,
) -> None:
    store = fallback.store
    remember = fallback.remember
    try:
        if remember is not None and not remember(value):
            return
        if isinstance(store, StaleStore):
            store.put(_key(fallback, fn, args, kwargs), value)
    except Exception:
        _store_failed(store)


#: Stale stores whose put() raised, by id; the value keeps the id from being reused.
_FAILED_STORES: dict[int, object] = {}


def _store_failed(store: object) -> None:
    """Remembering a good value is done on the toolkit's behalf: it never fails the call."""
    if id(store) in _FAILED_STORES:
        return
    _FAILED_STORES[id(store)] = store
    _log.exception(
        "stale store %r could not keep a value; calls go on without it (logged once)", store
    )


async def _recall_async(
    fallback: Fallback, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, float] | None:
    store = fallback.store
    key = _key(fallback, fn, args, kwargs)
    if isinstance(store, AsyncStaleStore):
        return await store.aget(key)
    if store is not None:
        return store.get(key)
    return None
