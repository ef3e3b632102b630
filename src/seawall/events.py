"""Typed events, and the listeners that receive them.

Policies decide; they do no I/O. Each decision worth seeing (a state change, a
rejection, a scheduled retry, a fallback) becomes a small frozen event handed to
the listeners registered for its type. Exporters (Prometheus, OpenTelemetry,
logging) are listeners living in :mod:`seawall.integrations`.

A listener that raises never breaks the call that emitted the event: the error
is logged once per listener (not once per event) and the listener keeps
receiving events. With no listener registered for a type, policies build no
event of that type at all, so an unobserved policy pays nothing for events.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "LISTENERS",
    "BulkheadRejected",
    "CallCompleted",
    "CallRejected",
    "Event",
    "FallbackFailed",
    "FallbackUsed",
    "GiveUpReason",
    "LimitChanged",
    "LimitRejected",
    "Listener",
    "Listeners",
    "LoadShed",
    "OutboxDelivered",
    "OutboxDeliveryFailed",
    "OutboxDropped",
    "RetryGaveUp",
    "RetryScheduled",
    "StateChanged",
    "StoreRecovered",
    "StoreUnavailable",
    "ThrottleRejected",
    "TimedOut",
]

_log = logging.getLogger("seawall.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        name: The policy's name (for policies inside a Dependency, the dependency's).
        at: The policy clock's ``monotonic()`` when the event happened.
    """

    name: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    """A circuit breaker moved from one state to another.

    ``old`` and ``new`` are :class:`seawall.State` members. ``reason`` says why
    in a few words (``"failure rate"``, ``"slow-call rate"``, ``"probe failed"``,
    ``"probes succeeded"``, ``"open duration elapsed"``, ``"probe timed out"``,
    or the operator action). The rates and thresholds are those of the window
    at the moment of the change, so an alert can say what tripped it. With
    ``shadow=True`` the breaker only computes its decisions: this is what it
    *would* have done.
    """

    old: enum.Enum
    new: enum.Enum
    reason: str
    failure_rate: float
    slow_call_rate: float
    failure_rate_threshold: float
    slow_call_rate_threshold: float
    calls: int
    shadow: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(Event):
    """A circuit breaker refused a call (or, with ``shadow=True``, would have).

    ``retry_after`` is the number of seconds until a probe is admitted, or
    ``None`` when none is scheduled.
    """

    state: enum.Enum
    retry_after: float | None
    shadow: bool = False


class GiveUpReason(enum.Enum):
    """Why a retry policy stopped retrying an error it would otherwise retry."""

    EXHAUSTED = "exhausted"
    """Every attempt was used."""
    BUDGET = "budget"
    """The shared retry budget had no token left."""
    DEADLINE = "deadline"
    """The next delay would have ended past the ambient deadline."""
    MAX_ELAPSED = "max_elapsed"
    """The next delay would have ended past the policy's ``max_elapsed``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """A retry policy will try again after ``delay`` seconds.

    ``attempt`` is the number of the attempt that just failed (1 for the first
    try); ``exception`` is its error, or ``None`` when a result was retried on.
    ``retry_after`` is true when the delay came from the downstream's
    ``Retry-After`` rather than from the backoff schedule.
    """

    attempt: int
    delay: float
    exception: BaseException | None
    retry_after: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryGaveUp(Event):
    """A retry policy stopped with an error it would have retried; see ``reason``."""

    attempts: int
    reason: GiveUpReason
    exception: BaseException | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadRejected(Event):
    """A bulkhead had no permit free within ``max_wait`` and refused the call."""

    max_concurrent: int
    waited: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitChanged(Event):
    """An adaptive limit moved: ``old`` and ``new`` concurrency limits.

    ``rtt`` is the round-trip time the algorithm was given (the window's
    average, in seconds), ``in_flight`` the most calls in flight during that
    window, and ``dropped`` whether a call of the window was dropped (timed out
    or refused by the dependency).
    """

    old: int
    new: int
    rtt: float
    in_flight: int
    dropped: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitRejected(Event):
    """An adaptive limit refused a call: ``limit`` calls were already in flight."""

    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleRejected(Event):
    """Client-side throttling shed a call.

    ``probability`` is the rejection probability in force; ``requests`` and
    ``accepts`` are the trailing window's counts it was computed from.
    """

    probability: float
    requests: int
    accepts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadShed(Event):
    """The service's load shedding refused a request.

    ``route`` is the request's path template or path, ``priority`` its
    priority (0 is the most important), ``limit`` the concurrency that
    priority was allowed, ``in_flight`` the requests being served.
    """

    route: str
    priority: int
    limit: int
    in_flight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut(Event):
    """A timeout scope ran out; ``timeout`` is the budget it had, in seconds."""

    timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackUsed(Event):
    """A degradable dependency answered from its fallback instead of the call.

    ``kind`` is ``"value"``, ``"call"`` or ``"stale"``; ``age`` is the stale
    value's age in seconds (``None`` for the other kinds).
    """

    kind: str
    cause: BaseException
    age: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackFailed(Event):
    """A fallback could not answer (it raised, or its stale value was too old)."""

    kind: str
    cause: BaseException
    error: BaseException | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallCompleted(Event):
    """A call through a :class:`~seawall.Dependency` ended, every policy included.

    ``outcome`` is ``"success"``, ``"fallback"`` (a degraded answer),
    ``"rejected"`` (open circuit or full bulkhead), ``"timeout"`` or
    ``"failure"``; ``duration`` covers every attempt and wait, in seconds.
    """

    outcome: str
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDelivered(Event):
    """A background dependency's outbox delivered an entry (``attempts`` tries)."""

    entry_id: str
    attempts: int
    age: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDeliveryFailed(Event):
    """One delivery attempt of an outbox entry failed; it will be tried again."""

    entry_id: str
    attempts: int
    error: BaseException
    next_delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDropped(Event):
    """An outbox entry will not be delivered; ``policy`` says why.

    ``reject_new`` / ``drop_oldest``: the outbox was full (the overflow policy
    chose this entry); ``max_attempts``: it was moved to the dead-letter table;
    ``undecodable``, ``storage_error``, ``closed``: it could not be stored or read.
    """

    entry_id: str
    policy: str
    depth: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreUnavailable(Event):
    """A store shared by replicas stopped answering; policies act on local state.

    ``name`` is the store's namespace; ``store`` says which store
    (``"breakers"`` or ``"stale"``); ``error`` is the failure's type name (never
    its text, which may hold an address).
    """

    store: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreRecovered(Event):
    """A shared store answers again after ``down_for`` seconds; sharing resumes."""

    store: str
    down_for: float


E_contra = TypeVar("E_contra", bound=Event, contravariant=True)


class Listener(Protocol[E_contra]):
    """Anything callable with one event: a function, a bound method, an exporter."""

    def __call__(self, event: E_contra, /) -> None:
        """Receive one event. Must not block; exceptions are logged and dropped."""
        ...


_Registration = tuple["Callable[[Event], None]", tuple[type[Event], ...]]


class Listeners:
    """A set of listeners, each for all events or for some event types.

    Policies emit to the process-wide :data:`LISTENERS` unless built with a
    ``listeners=`` of their own (tests do this to observe one policy alone).
    Registration is thread-safe. Emitting takes no lock, except the first
    emit of an event type after a change, which resolves its listeners under
    the registration lock (reentrant: a listener or finalizer that emits while
    it is held does not deadlock).
    """

    __slots__ = ("_by_type", "_failed", "_lock", "_registrations")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._registrations: tuple[_Registration, ...] = ()
        # Resolved per concrete event type on first emit; replaced whole on change,
        # so readers never see a half-built mapping.
        self._by_type: dict[type[Event], tuple[Callable[[Event], None], ...]] = {}
        # Listeners that raised, by id; the value keeps the listener alive so
        # its id cannot be reused by a new one that would then go unreported.
        self._failed: dict[int, object] = {}

    def add(
        self,
        listener: Callable[[Event], None] | Callable[[E_contra], None],
        *types: type[Event],
    ) -> Callable[[], None]:
        """Register ``listener`` for ``types`` (all events when none are given).

        Returns:
            A function that removes this registration again.
        """
        fn: Callable[[Event], None] = listener  # type: ignore[assignment]
        entry = (fn, types or (Event,))
        with self._lock:
            self._registrations = (*self._registrations, entry)
            self._by_type = {}

        def remove() -> None:
            with self._lock:
                self._registrations = tuple(r for r in self._registrations if r is not entry)
                self._by_type = {}

        return remove

    def clear(self) -> None:
        """Remove every listener."""
        with self._lock:
            self._registrations = ()
            self._by_type = {}
            self._failed = {}

    def __bool__(self) -> bool:
        """Return whether any listener is registered."""
        return bool(self._registrations)

    def wants(self, event_type: type[Event]) -> bool:
        """Return whether any listener would receive an event of ``event_type``."""
        return bool(self._resolve(event_type))

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every listener registered for its type.

        Never raises: a failing listener is logged once and skipped.
        """
        for fn in self._by_type.get(type(event)) or self._resolve(type(event)):
            try:
                fn(event)
            except Exception:
                self._report(fn)

    def _resolve(self, event_type: type[Event]) -> tuple[Callable[[Event], None], ...]:
        cached = self._by_type.get(event_type)
        if cached is not None:
            return cached
        # Under the lock: an add() between reading the registrations and
        # storing the result would otherwise be cached over, and its listener
        # would miss this event type until the next change.
        with self._lock:
            cached = self._by_type.get(event_type)
            if cached is not None:
                return cached
            fns = tuple(fn for fn, types in self._registrations if issubclass(event_type, types))
            by_type = dict(self._by_type)
            by_type[event_type] = fns
            self._by_type = by_type
            return fns

    def _report(self, fn: Callable[[Event], None]) -> None:
        key = id(fn)
        if key in self._failed:
            return
        with self._lock:
            if key in self._failed:
                return
            self._failed[key] = fn
        _log.exception("seawall listener %r raised; its later errors are not logged", fn)

    def __repr__(self) -> str:
        return f"<Listeners: {len(self._registrations)} registered>"


#: The process-wide listeners every policy emits to unless given its own.
LISTENERS = Listeners()
