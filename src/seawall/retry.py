"""Retry: try a failed call again, after a backoff, without making an outage worse.

A :class:`Retry` policy re-runs a call whose error is *transient* (a dropped
connection, a timeout, an HTTP 429 or 503), waiting between tries on a
:class:`~seawall.core.backoff.Backoff` schedule with jitter, honouring the
downstream's ``Retry-After``, and stopping early when:

* every attempt is used (``attempts`` counts the first try too);
* the next delay would end past ``max_elapsed`` or the ambient deadline
  (:func:`seawall.deadline`): it gives up at once with the last error rather
  than sleep and then fail;
* a shared :class:`~seawall.core.budget.RetryBudget` is empty, which is what
  keeps many callers from turning an outage into a retry storm.

Each stop emits :class:`~seawall.events.RetryGaveUp` with its reason, and each
scheduled retry :class:`~seawall.events.RetryScheduled`. Errors that are not
retryable pass through untouched, at once; rejections
(:class:`~seawall.errors.RejectedError`: an open circuit, a full bulkhead) are
never retried whatever ``on`` says, since retrying them only adds load.

Use it as a decorator on a sync or async function, through :meth:`Retry.call`
/ :meth:`Retry.call_async`, or as an attempt loop::

    for attempt in retry:          # or: async for attempt in retry:
        with attempt:
            reply = client.get(url)

A call that succeeds first time pays for one ``try`` block and nothing else:
the schedule, the attempt counter and any clock reading are set up only after a
first failure.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast, overload

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.core.backoff import Backoff, retry_after_of
from seawall.core.budget import Budget, RetryBudget
from seawall.errors import RejectedError, RetryError
from seawall.events import LISTENERS, GiveUpReason, Listeners, RetryGaveUp, RetryScheduled
from seawall.timeouts import current_deadline

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable
    from datetime import timedelta
    from types import TracebackType

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF",
    "TRANSIENT_STATUSES",
    "Attempt",
    "Retry",
    "RetryConfig",
    "Transient",
    "status_of",
    "transient",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_ATTEMPTS = 3
"""Total tries by default, the first included."""
DEFAULT_BACKOFF = Backoff.exponential(initial=0.1, maximum=10.0, jitter="full")
"""Exponential from 0.1 s, doubling, capped at 10 s, with full jitter."""

#: HTTP statuses worth another try: timeout, too many requests, and the 5xx that
#: mean "not now" (501 Not Implemented and 505 never get better by retrying).
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

ExceptionSpec = type[BaseException] | tuple[type[BaseException], ...]

# Transient errors of common HTTP clients, recognised by class name and top-level
# module along the error's MRO, so that no client library is ever imported.
_FOREIGN_TRANSIENT: dict[str, frozenset[str]] = {
    "httpx": frozenset({"TimeoutException", "NetworkError", "RemoteProtocolError"}),
    "httpcore": frozenset({"TimeoutException", "NetworkError", "RemoteProtocolError"}),
    "requests": frozenset({"ConnectionError", "Timeout"}),
    "urllib3": frozenset({"TimeoutError", "NewConnectionError", "ProtocolError"}),
    "aiohttp": frozenset({"ClientConnectionError", "ServerTimeoutError"}),
    # Databases and caches: PEP 249's OperationalError is "not under the control
    # of the programmer" (a lost connection, a cancelled statement); SQLAlchemy
    # wraps it, and adds its own pool timeout.
    "sqlalchemy": frozenset(
        {"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"}
    ),
    "psycopg": frozenset({"OperationalError", "InterfaceError"}),
    "asyncpg": frozenset(
        {"ConnectionDoesNotExistError", "QueryCanceledError", "CannotConnectNowError"}
    ),
    "redis": frozenset({"ConnectionError", "TimeoutError", "BusyLoadingError"}),
}


def status_of(exc: BaseException) -> int | None:
    """Return the HTTP status an exception carries, or ``None``.

    Looks at ``exc.status_code`` and ``exc.status``, then at the same attributes
    of ``exc.response`` (httpx's ``HTTPStatusError``, requests' ``HTTPError``,
    aiohttp's ``ClientResponseError``, urllib's ``HTTPError``). Only integers
    from 100 to 599 count. Never raises.
    """
    try:
        for holder in (exc, getattr(exc, "response", None)):
            if holder is None:
                continue
            for attr in ("status_code", "status"):
                value = getattr(holder, attr, None)
                if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:  # noqa: PLR2004 - the HTTP status range
                    return int(value)
    except Exception:
        return None
    return None


def _foreign_transient(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        names = _FOREIGN_TRANSIENT.get(cls.__module__.partition(".")[0])
        if names is not None and cls.__name__ in names:
            return True
    return False


class Transient:
    """A classifier of transient errors; :data:`transient` is the default one.

    ``transient(exc)`` is true, in this order of precedence, for:

    1. never a :class:`~seawall.errors.RejectedError` (an open circuit, a full
       bulkhead), nor a type removed with :meth:`without`;
    2. a type or predicate added with :meth:`with_`;
    3. an exception carrying an HTTP status (see :func:`status_of`): when that
       status is one of :attr:`statuses` (by default 408, 429, 500, 502, 503,
       504; never another 4xx, nor 501 or 505);
    4. otherwise connection errors and timeouts: :class:`ConnectionError`,
       :class:`TimeoutError` (so :class:`~seawall.errors.DeadlineExceeded` and
       :class:`asyncio.TimeoutError` too) and the connection and timeout errors
       of httpx, httpcore, requests, urllib3 and aiohttp, and the operational
       errors of SQLAlchemy, psycopg, asyncpg and redis-py, recognised by name
       without importing them.

    Instances are immutable; :meth:`with_` and :meth:`without` return new ones::

        Retry(on=transient.without(500))                 # a 500 here is a bug
        Retry(on=transient.with_(409, BrokenPipeError))  # also these

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_excluded",
        "_extra",
        "_predicates",
        "_refused",
        "_types",
        "excluded_statuses",
        "statuses",
    )

    def __init__(
        self,
        *,
        statuses: Iterable[int] = TRANSIENT_STATUSES,
        types: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
        excluded: tuple[type[BaseException], ...] = (),
        extra: tuple[type[BaseException], ...] = (),
        predicates: tuple[Callable[[BaseException], bool], ...] = (),
        excluded_statuses: Iterable[int] = (),
    ) -> None:
        statuses = frozenset(statuses)
        _validate.fail_if([m for s in statuses for m in _check_status(s)])
        #: The HTTP statuses that are retried.
        self.statuses: frozenset[int] = statuses
        #: The statuses removed with :meth:`without`, kept so that code that
        #: widens a classifier (the httpx integration) leaves them out.
        self.excluded_statuses: frozenset[int] = frozenset(excluded_statuses) - statuses
        self._types = types
        self._excluded = excluded
        # Rejections first: "never retry a rejection" is not negotiable.
        self._refused: tuple[type[BaseException], ...] = (RejectedError, *excluded)
        self._extra = extra
        self._predicates = predicates

    def __call__(self, exc: BaseException) -> bool:
        """Return whether ``exc`` is worth another try."""
        if isinstance(exc, self._refused):
            return False
        if isinstance(exc, self._extra) or any(p(exc) for p in self._predicates):
            return True
        status = status_of(exc)
        if status is not None:
            return status in self.statuses
        return isinstance(exc, self._types) or _foreign_transient(exc)

    def with_(self, *what: int | type[BaseException] | Callable[[BaseException], bool]) -> Self:
        """Return a classifier that also retries these statuses, exception types or predicates.

        An added type or predicate wins over the status rules (but never over a
        rejection). An added type that was removed with :meth:`without` is
        retried again.

        Raises:
            ConfigError: A status is not an integer from 100 to 599.
        """
        statuses = set(self.statuses)
        extra = list(self._extra)
        excluded = list(self._excluded)
        predicates = list(self._predicates)
        dropped = set(self.excluded_statuses)
        errors: list[str] = []
        for item in what:
            thing: object = item  # typed, but callers may not be
            if isinstance(thing, type) and issubclass(thing, BaseException):
                extra.append(thing)
                excluded = [t for t in excluded if t is not thing]
            elif isinstance(thing, int):
                errors += _check_status(thing)
                statuses.add(thing)
                dropped.discard(thing)
            elif callable(thing):
                predicates.append(cast("Callable[[BaseException], bool]", thing))
            else:
                errors.append(
                    f"with_() takes statuses, exception types or predicates, got {item!r}"
                )
        _validate.fail_if(errors)
        return self._copy(statuses, extra, excluded, predicates, dropped)

    def without(self, *what: int | type[BaseException]) -> Self:
        """Return a classifier that never retries these statuses or exception types.

        Raises:
            ConfigError: An item is neither a status (100-599) nor an exception type.
        """
        statuses = set(self.statuses)
        extra = list(self._extra)
        excluded = list(self._excluded)
        dropped = set(self.excluded_statuses)
        errors: list[str] = []
        for item in what:
            thing: object = item  # typed, but callers may not be
            if isinstance(thing, type) and issubclass(thing, BaseException):
                excluded.append(thing)
                extra = [t for t in extra if t is not thing]
            elif isinstance(thing, int):
                errors += _check_status(thing)
                statuses.discard(thing)
                dropped.add(thing)
            else:
                errors.append(f"without() takes statuses or exception types, got {item!r}")
        _validate.fail_if(errors)
        return self._copy(statuses, extra, excluded, list(self._predicates), dropped)

    def _copy(
        self,
        statuses: set[int],
        extra: list[type[BaseException]],
        excluded: list[type[BaseException]],
        predicates: list[Callable[[BaseException], bool]],
        dropped: set[int],
    ) -> Self:
        return type(self)(
            statuses=statuses,
            types=self._types,
            excluded=tuple(excluded),
            extra=tuple(extra),
            predicates=tuple(predicates),
            excluded_statuses=dropped,
        )

    def __repr__(self) -> str:
        parts = [f"statuses={sorted(self.statuses)}"]
        if self._extra or self._predicates:
            parts.append(f"with={[*self._extra, *self._predicates]!r}")
        if self._excluded:
            parts.append(f"without={list(self._excluded)!r}")
        return f"Transient({', '.join(parts)})"


def _check_status(status: object) -> list[str]:
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:  # noqa: PLR2004 - the HTTP status range
        return []
    return [f"status must be an HTTP status code from 100 to 599, got {status!r}"]


#: The default classifier: connection errors, timeouts, HTTP 408/429/500/502/503/504.
transient = Transient()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """The validated, immutable configuration of a :class:`Retry`.

    Every field is documented on :class:`Retry`. Building one with a bad value
    raises :class:`~seawall.errors.ConfigError` naming each bad field and value.

    .. versionadded:: 0.1
    """

    attempts: int = DEFAULT_ATTEMPTS
    backoff: Backoff = DEFAULT_BACKOFF
    on: ExceptionSpec | Callable[[BaseException], bool] = transient
    on_result: Callable[[Any], bool] | None = None
    max_elapsed: float | None = None
    respect_retry_after: bool = True
    budget: Budget | None = None
    reraise: bool = True

    def __post_init__(self) -> None:
        errors = _validate.at_least("attempts", self.attempts, 1)
        backoff: object = self.backoff
        if not isinstance(backoff, Backoff):
            errors.append(f"backoff must be a Backoff, got {backoff!r}")
        on: object = self.on
        if isinstance(on, (type, tuple)):
            types = on if isinstance(on, tuple) else (on,)
            if not types or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in types
            ):
                errors.append(
                    f"on must be an exception type, a tuple of them or a predicate, got {on!r}"
                )
        elif not callable(on):
            errors.append(
                f"on must be an exception type, a tuple of them or a predicate, got {on!r}"
            )
        on_result: object = self.on_result
        if on_result is not None and not callable(on_result):
            errors.append(f"on_result must be a predicate or None, got {on_result!r}")
        if self.max_elapsed is not None:
            errors += _validate.duration("max_elapsed", self.max_elapsed, allow_zero=False)
        budget: object = self.budget
        if budget is not None and not isinstance(budget, Budget):
            errors.append(f"budget must have deposit() and try_withdraw(), got {budget!r}")
        for flag in ("respect_retry_after", "reraise"):
            if not isinstance(getattr(self, flag), bool):
                errors.append(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        _validate.fail_if(errors)


def _retryable_predicate(
    on: ExceptionSpec | Callable[[BaseException], bool],
) -> Callable[[BaseException], bool]:
    """Turn ``on`` into one predicate that also refuses every rejection."""
    if isinstance(on, Transient):
        return on  # it refuses rejections itself
    if isinstance(on, (type, tuple)):
        types = on

        def by_type(exc: BaseException) -> bool:
            return isinstance(exc, types) and not isinstance(exc, RejectedError)

        return by_type
    predicate = on

    def by_predicate(exc: BaseException) -> bool:
        return not isinstance(exc, RejectedError) and bool(predicate(exc))

    return by_predicate


class _Call:
    """The decisions of one logical call after its first failure (sans-IO: never sleeps).

    :meth:`decide` answers each failure with the delay before the next attempt,
    or ``None`` to give up; the driver sleeps and calls again, or stops.
    """

    __slots__ = ("attempt", "deadline_at", "delays", "policy", "start")

    def __init__(self, policy: Retry, start: float | None) -> None:
        self.policy = policy
        #: The number of the attempt that just failed (1 for the first).
        self.attempt = 1
        self.delays = policy.config.backoff.delays(policy._random)
        self.start = start
        ambient = current_deadline()
        # The ambient deadline is a time.monotonic() reading; the policy may run
        # on another clock (a FakeClock in tests). Translate it once, here, into
        # the policy's clock, so that sleeps on that clock use the deadline up.
        if ambient is None:
            self.deadline_at: float | None = None
        elif policy._clock is MONOTONIC:
            self.deadline_at = ambient
        else:
            self.deadline_at = policy._now() + (ambient - time.monotonic())

    def decide(self, exc: BaseException | None, result: object) -> float | None:
        """Return the delay before the next attempt, or ``None`` to give up (with its event)."""
        policy = self.policy
        config = policy.config
        attempt = self.attempt
        if attempt >= config.attempts:
            self._give_up(GiveUpReason.EXHAUSTED, exc)
            return None
        delay = float(next(self.delays))
        hinted = False
        if config.respect_retry_after:
            asked = retry_after_of(exc if exc is not None else result)
            if asked is not None:
                # A server's wish, but never more than our own longest wait:
                # "Retry-After: 864000" must not park a caller for ten days.
                delay = min(asked, config.backoff.maximum)
                hinted = True
        deadline_at = self.deadline_at
        start = self.start
        now = 0.0
        if deadline_at is not None or start is not None:
            now = policy._now()
            end = now + delay
            limit = None if start is None else start + config.max_elapsed  # type: ignore[operator]
            # Report whichever bound is the tighter one.
            if (
                deadline_at is not None
                and end >= deadline_at
                and (limit is None or deadline_at <= limit)
            ):
                self._give_up(GiveUpReason.DEADLINE, exc)
                return None
            if limit is not None and end >= limit:
                self._give_up(GiveUpReason.MAX_ELAPSED, exc)
                return None
        # Last, so a retry that was not going to happen anyway costs no token.
        budget = config.budget
        if budget is not None and not budget.try_withdraw():
            self._give_up(GiveUpReason.BUDGET, exc)
            return None
        listeners = policy._listeners
        if listeners:
            listeners.emit(
                RetryScheduled(
                    name=policy.name,
                    at=now or policy._now(),
                    attempt=attempt,
                    delay=delay,
                    exception=exc,
                    retry_after=hinted,
                )
            )
        self.attempt = attempt + 1
        return delay

    def _give_up(self, reason: GiveUpReason, exc: BaseException | None) -> None:
        policy = self.policy
        listeners = policy._listeners
        if listeners:
            listeners.emit(
                RetryGaveUp(
                    name=policy.name,
                    at=policy._now(),
                    attempts=self.attempt,
                    reason=reason,
                    exception=exc,
                )
            )


class Retry:
    """A retry policy: which failures to try again, how often, and how long to wait.

    Args:
        attempts: Total tries, the first included (>= 1). Default 3.
        backoff: The delay schedule. Default: exponential from 0.1 s to 10 s,
            doubling, with full jitter.
        on: Which exceptions to retry: a type, a tuple of types, or a predicate.
            Default :data:`transient`. Only :class:`Exception` subclasses are
            ever retried, and never a :class:`~seawall.errors.RejectedError`.
        on_result: A predicate on a call's *result* that asks for a retry (a
            response with status 503 that the client did not raise for). When
            the attempts run out, the last result is returned (with
            ``reraise=False``, :class:`~seawall.errors.RetryError` is raised).
        max_elapsed: Seconds from the start of the first attempt after which no
            retry starts: a retry whose delay would end later gives up at once.
            It bounds when attempts start, not how long one runs: put a
            :func:`seawall.timeout` inside for that. Default: no bound.
        respect_retry_after: Let a ``retry_after`` attribute or a
            ``Retry-After`` header (seconds or HTTP date, on the exception, its
            ``response`` or the result) set the next delay, capped at
            ``backoff.maximum``; malformed values are ignored. Default true.
        budget: A :class:`~seawall.core.budget.RetryBudget` (or any
            :class:`~seawall.core.budget.Budget`) shared with other calls and
            policies; every call deposits, every retry withdraws. Default: none.
        reraise: When giving up, re-raise the last error (true, the default), or
            raise :class:`~seawall.errors.RetryError` from it.
        name: The policy's name in events. Default ``"retry"``.
        clock: Time source for sleeps and ``max_elapsed``; defaults to the real
            clock. Tests pass :class:`~seawall.testing.FakeClock`.
        listeners: Where events go; defaults to :data:`seawall.events.LISTENERS`.
        random: Jitter's source of floats in [0, 1); defaults to
            :func:`random.random`.

    A policy keeps no per-call state: share one across threads and tasks.
    The ambient deadline (:func:`seawall.deadline`, :func:`seawall.timeout`)
    bounds the retries too: one whose delay would end at or past it gives up at
    once with the last error, rather than sleep and then fail.

    Raises:
        ConfigError: Some option is out of range; the message names each one.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_async_sleep",
        "_clock",
        "_deposit",
        "_listeners",
        "_now",
        "_random",
        "_retryable",
        "_sleep",
        "config",
        "name",
    )

    def __init__(
        self,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: Backoff = DEFAULT_BACKOFF,
        on: ExceptionSpec | Callable[[BaseException], bool] = transient,
        on_result: Callable[[Any], bool] | None = None,
        max_elapsed: float | timedelta | None = None,
        respect_retry_after: bool = True,
        budget: Budget | None = None,
        reraise: bool = True,
        name: str = "retry",
        clock: Clock | None = None,
        listeners: Listeners | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        errors: list[str] = []
        if not isinstance(name, str) or not name:
            errors.append(f"name must be a non-empty string, got {name!r}")
        rand: object = random  # typed, but callers may not be
        if rand is not None and not callable(rand):
            errors.append(f"random must be a callable returning floats in [0, 1), got {rand!r}")
        _validate.fail_if(errors)
        self.name = name
        self.config = RetryConfig(
            attempts=attempts,
            backoff=backoff,
            on=on,
            on_result=on_result,
            max_elapsed=None if max_elapsed is None else _validate.seconds(max_elapsed),
            respect_retry_after=respect_retry_after,
            budget=budget,
            reraise=reraise,
        )
        clock = MONOTONIC if clock is None else clock
        self._clock = clock
        self._now = clock.monotonic
        self._sleep = clock.sleep
        self._async_sleep = clock.async_sleep
        self._listeners = LISTENERS if listeners is None else listeners
        self._random = random
        self._retryable = _retryable_predicate(on)
        # A deposit is on every call's path: for our own budget, go straight to
        # its lock-free counter (one C call) instead of through a method.
        self._deposit: Callable[[], object] | None = (
            None
            if budget is None
            else budget._calls.__next__
            if isinstance(budget, RetryBudget)
            else budget.deposit
        )

    # -- calling through the policy ------------------------------------------
    #
    # The first attempt runs inline in a bare `try`; only a failure the policy
    # would retry enters the retry loop (_again / _again_async), which is where
    # every piece of per-call state is built.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)``, retrying per the policy, and return its result.

        Raises:
            Exception: The last error when retries stop (``reraise=True``), or
                at once one that is not retryable.
            RetryError: Retries stopped and ``reraise=False``.
        """
        deposit = self._deposit
        if deposit is not None:
            deposit()
        start = self._now() if self.config.max_elapsed is not None else None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if not self._retryable(exc):
                raise
            failed = exc
        else:
            on_result = self.config.on_result
            if on_result is None or not on_result(result):
                return result
            return cast("R", self._again(fn, args, kwargs, None, result, start=start))
        return cast("R", self._again(fn, args, kwargs, failed, None, start=start))

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)``, retrying per the policy, and return its result.

        Raises:
            Exception: The last error when retries stop (``reraise=True``), or
                at once one that is not retryable.
            RetryError: Retries stopped and ``reraise=False``.
        """
        deposit = self._deposit
        if deposit is not None:
            deposit()
        start = self._now() if self.config.max_elapsed is not None else None
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if not self._retryable(exc):
                raise
            failed = exc
        else:
            on_result = self.config.on_result
            if on_result is None or not on_result(result):
                return result
            return cast("R", await self._again_async(fn, args, kwargs, None, result, start=start))
        return cast("R", await self._again_async(fn, args, kwargs, failed, None, start=start))

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so that every call goes through the policy.

        Raises:
            TypeError: ``fn`` is a generator or async generator function: an
                error raised while it is iterated would not be retried
                (decorate what consumes it).
        """
        _validate.refuse_generators(fn, "Retry")
        if inspect.iscoroutinefunction(fn):
            return self._wrap_async(fn)
        return self._wrap_sync(fn)

    # Decorated functions are the hot path, so the wrappers repeat call() /
    # call_async() rather than call them: one Python frame less is most of what
    # a successful call costs (about half with a budget). With nothing to do
    # before the first attempt (no budget, no max_elapsed, no on_result) the
    # wrapper is a bare `try` around the call.

    def _is_plain(self) -> bool:
        config = self.config
        return self._deposit is None and config.max_elapsed is None and config.on_result is None

    def _wrap_sync(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        if not self._is_plain():
            return self._wrap_general(fn)
        again = self._again
        retryable = self._retryable

        @functools.wraps(fn)
        def plain_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not retryable(exc):
                    raise
                failed = exc
            return again(fn, args, kwargs, failed, None, start=None)

        return plain_wrapper

    def _wrap_async(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        if not self._is_plain():
            return self._wrap_general_async(fn)
        again = self._again_async
        retryable = self._retryable

        @functools.wraps(fn)
        async def plain_async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if not retryable(exc):
                    raise
                failed = exc
            return await again(fn, args, kwargs, failed, None, start=None)

        return plain_async_wrapper

    def _wrap_general(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        again = self._again
        retryable = self._retryable
        on_result = self.config.on_result
        deposit = self._deposit
        now = self._now if self.config.max_elapsed is not None else None

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if deposit is not None:
                deposit()
            start = None if now is None else now()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not retryable(exc):
                    raise
                failed = exc
            else:
                if on_result is None or not on_result(result):
                    return result
                return again(fn, args, kwargs, None, result, start=start)
            return again(fn, args, kwargs, failed, None, start=start)

        return wrapper

    def _wrap_general_async(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        again = self._again_async
        retryable = self._retryable
        on_result = self.config.on_result
        deposit = self._deposit
        now = self._now if self.config.max_elapsed is not None else None

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if deposit is not None:
                deposit()
            start = None if now is None else now()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                if not retryable(exc):
                    raise
                failed = exc
            else:
                if on_result is None or not on_result(result):
                    return result
                return await again(fn, args, kwargs, None, result, start=start)
            return await again(fn, args, kwargs, failed, None, start=start)

        return async_wrapper

    # -- the retry loops: the sync and async ones differ only in their awaits --

    def _again(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: Any,
        *,
        start: float | None,
    ) -> Any:
        call = _Call(self, start)
        sleep = self._sleep
        retryable = self._retryable
        on_result = self.config.on_result
        while True:
            delay = call.decide(exc, result)
            if delay is None:
                return self._stop(exc, result, call.attempt)
            sleep(delay)
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                if not retryable(error):
                    raise
                exc = error
                result = None
                continue
            if on_result is None or not on_result(result):
                return result
            exc = None

    async def _again_async(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: Any,
        *,
        start: float | None,
    ) -> Any:
        call = _Call(self, start)
        sleep = self._async_sleep
        retryable = self._retryable
        on_result = self.config.on_result
        while True:
            delay = call.decide(exc, result)
            if delay is None:
                return self._stop(exc, result, call.attempt)
            await sleep(delay)
            try:
                result = await fn(*args, **kwargs)
            except Exception as error:
                if not retryable(error):
                    raise
                exc = error
                result = None
                continue
            if on_result is None or not on_result(result):
                return result
            exc = None

    def _stop(self, exc: BaseException | None, result: Any, attempts: int) -> Any:
        """Give up: re-raise the last error, return the last result, or raise RetryError."""
        if self.config.reraise:
            if exc is not None:
                raise exc
            return result
        raise RetryError(last_exception=exc, attempts=attempts) from exc

    # -- the attempt loop ------------------------------------------------------

    def __iter__(self) -> Attempt:
        """Start an attempt loop: ``for attempt in retry: with attempt: ...``."""
        return Attempt(self)

    def __aiter__(self) -> Attempt:
        """Start an async attempt loop: ``async for attempt in retry: with attempt: ...``."""
        return Attempt(self)

    def __repr__(self) -> str:
        return f"<Retry {self.name!r} attempts={self.config.attempts}>"


class Attempt:
    """One logical call's attempt loop, yielding itself once per attempt.

    ``with attempt:`` (or ``async with attempt:``) runs one try: a retryable
    error is absorbed and the loop sleeps and yields the next attempt; success
    ends the loop; an error that is not retryable, or the last one, leaves the
    ``with`` block as is (wrapped in :class:`~seawall.errors.RetryError` if the
    policy has ``reraise=False``). ``on_result`` does not apply here: the loop
    never sees a result.

    Attributes:
        number: The current attempt, from 1.

    .. versionadded:: 0.1
    """

    __slots__ = ("_call", "_delay", "_policy", "_start", "number")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self._call: _Call | None = None
        self._delay: float | None = None
        self._start: float | None = None
        self.number = 0

    def __iter__(self) -> Self:
        return self

    def __aiter__(self) -> Self:
        return self

    def __next__(self) -> Self:
        delay = self._advance()
        if delay is not None:
            self._policy._sleep(delay)
        return self

    async def __anext__(self) -> Self:
        try:
            delay = self._advance()
        except StopIteration:
            raise StopAsyncIteration from None
        if delay is not None:
            await self._policy._async_sleep(delay)
        return self

    def _advance(self) -> float | None:
        """Move to the next attempt and return the delay to sleep first, or stop."""
        if self.number == 0:
            policy = self._policy
            deposit = policy._deposit
            if deposit is not None:
                deposit()
            if policy.config.max_elapsed is not None:
                self._start = policy._now()
            self.number = 1
            return None
        delay = self._delay
        if delay is None:  # the last attempt succeeded (or never ran)
            raise StopIteration
        self._delay = None
        self.number += 1
        return delay

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        policy = self._policy
        if not policy._retryable(exc):
            return False
        call = self._call
        if call is None:
            call = self._call = _Call(policy, self._start)
        delay = call.decide(exc, None)
        if delay is None:
            if policy.config.reraise:
                return False
            raise RetryError(last_exception=exc, attempts=call.attempt) from exc
        self._delay = delay
        return True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self._policy.config.attempts}>"
