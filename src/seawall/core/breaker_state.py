"""The circuit-breaker state machine, shared by the sync and async drivers.

This module decides; it never waits. A driver asks :meth:`BreakerState.acquire`
for a *permit* before a call and reports the call's end with exactly one of
:meth:`~BreakerState.on_success`, :meth:`~BreakerState.on_error` or
:meth:`~BreakerState.release`, handing the permit back.

States and their moves::

    CLOSED ──rate >= threshold──▶ OPEN ──open_duration──▶ HALF_OPEN
       ▲                           ▲                         │
       │                           └── a probe fails, is ────┤
       │                               slow, or outlives     │
       │                               half_open_max_wait    │
       └──────────── half_open_calls probes succeed ─────────┘

    FORCED_OPEN, DISABLED: set by an operator, left by reset() (or each other).

A permit is the breaker's *generation* at admission. Every transition starts a
new generation, and an outcome whose permit is not the current generation is
dropped: a slow call admitted while CLOSED that fails after the circuit went
HALF_OPEN neither re-opens it nor takes a probe's place. A probe's permit is
its own (the generation plus a multiple of ``PROBE``), so that each probe is
timed from its own admission: one unfinished ``half_open_max_wait`` after it
started counts as failed, however long the circuit had been HALF_OPEN before.

One lock guards the fields, held for a few updates and never while the user's
function runs. Events are built under the lock and emitted after it is released.
Two paths take no lock at all, because they are most of the traffic: admitting
a call while CLOSED (one attribute read) and recording its success in a count
window (one ``next()`` on an :func:`itertools.count`, atomic in CPython).
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seawall import _validate
from seawall.core.window import FAILURE, SLOW, CountRing, CountWindow, TimeWindow
from seawall.errors import CircuitOpenError, fast_circuit_open
from seawall.events import CallRejected, Event, Listeners, StateChanged

if TYPE_CHECKING:
    from collections.abc import Callable

    from seawall._clock import Clock

__all__ = [
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_HALF_OPEN_CALLS",
    "DEFAULT_MINIMUM_CALLS",
    "DEFAULT_OPEN_DURATION",
    "DEFAULT_SLOW_CALL_DURATION",
    "DEFAULT_SLOW_CALL_RATE_THRESHOLD",
    "DEFAULT_WINDOW",
    "MAX_MINIMUM_CALLS",
    "NO_RECORD",
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerState",
    "ExceptionSpec",
    "State",
]

_log = logging.getLogger("seawall.breaker")
_new_exception = BaseException.__new__

NO_RECORD = -1
"""The permit of a call whose outcome must not count (DISABLED, shadow rejections)."""

PROBE = 1 << 40
"""Probe permits are ``generation + k * PROBE`` (k >= 1): never a generation."""


DEFAULT_FAILURE_RATE_THRESHOLD = 0.5
"""Share of failed calls in the window that opens the circuit, by default."""
DEFAULT_SLOW_CALL_RATE_THRESHOLD = 1.0
"""Share of slow calls that opens the circuit, by default 1.0: slow calls never open it."""
DEFAULT_SLOW_CALL_DURATION = 60.0
"""Seconds after which a call counts as slow, by default."""
DEFAULT_WINDOW = CountWindow(100)
"""The default window: the last 100 calls."""
DEFAULT_MINIMUM_CALLS = 20
"""Calls the window must hold before any decision, by default."""
DEFAULT_OPEN_DURATION = 30.0
"""Seconds an open circuit rejects before probing, by default."""
MAX_MINIMUM_CALLS = 1_000_000
"""The largest ``minimum_calls``: a breaker waiting for more calls than this before
its first decision would, at any real rate, never protect anything."""
DEFAULT_HALF_OPEN_CALLS = 2
"""Probes admitted at once in HALF_OPEN, by default; all must succeed."""

ExceptionSpec = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """The validated, immutable configuration of a :class:`CircuitBreaker`.

    Every field is documented on :class:`~seawall.breaker.CircuitBreaker`. It lives
    here, with the state machine it configures: the sans-IO core imports nothing
    from its drivers. Building one with a
    bad value raises :class:`~seawall.errors.ConfigError` naming each bad field
    and its value.
    """

    failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD
    slow_call_rate_threshold: float = DEFAULT_SLOW_CALL_RATE_THRESHOLD
    slow_call_duration: float = DEFAULT_SLOW_CALL_DURATION
    window: CountWindow | TimeWindow = DEFAULT_WINDOW
    minimum_calls: int = DEFAULT_MINIMUM_CALLS
    open_duration: float | Callable[[int], float] = DEFAULT_OPEN_DURATION
    half_open_calls: int = DEFAULT_HALF_OPEN_CALLS
    half_open_max_wait: float | None = None
    record: ExceptionSpec | Callable[[BaseException], bool] = Exception
    ignore: ExceptionSpec | Callable[[BaseException], bool] = field(default=())
    record_result: Callable[[Any], bool] | None = None
    shadow: bool = False

    def __post_init__(self) -> None:
        errors = [
            *_validate.in_range(
                "failure_rate_threshold", self.failure_rate_threshold, 0, 1, low_open=True
            ),
            *_validate.in_range(
                "slow_call_rate_threshold", self.slow_call_rate_threshold, 0, 1, low_open=True
            ),
            *_validate.duration("slow_call_duration", self.slow_call_duration, allow_zero=False),
            *_validate.integer_in("minimum_calls", self.minimum_calls, 1, MAX_MINIMUM_CALLS),
            *_validate.at_least("half_open_calls", self.half_open_calls, 1),
            *_validate.boolean("shadow", self.shadow),
        ]
        window: object = self.window  # typed, but callers may not be
        if not isinstance(window, (CountWindow, TimeWindow)):
            errors.append(f"window must be a CountWindow or a TimeWindow, got {window!r}")
        if callable(self.open_duration):
            errors += _check_open_duration_fn(self.open_duration)
        else:
            errors += _validate.duration("open_duration", self.open_duration, allow_zero=False)
        if self.half_open_max_wait is not None:
            errors += _validate.duration(
                "half_open_max_wait", self.half_open_max_wait, allow_zero=False
            )
        if not callable(self.ignore) or isinstance(self.ignore, type):
            errors += _check_exceptions("ignore", self.ignore, allow_empty=True)
        if not callable(self.record) or isinstance(self.record, type):
            errors += _check_exceptions("record", self.record, allow_empty=False)
        judge: object = self.record_result
        if judge is not None and not callable(judge):
            errors.append(f"record_result must be callable or None, got {judge!r}")
        _validate.fail_if(errors)


def _check_open_duration_fn(fn: Callable[[int], float]) -> list[str]:
    # A callable is checked once, on the first opening's count, so a schedule that
    # cannot work fails at construction rather than on the day the circuit opens.
    try:
        first = fn(1)
    except Exception as exc:
        return [f"open_duration(1) raised {exc!r}"]
    return _validate.duration("open_duration(1)", first, allow_zero=False)


def _check_exceptions(name: str, spec: object, *, allow_empty: bool) -> list[str]:
    types = spec if isinstance(spec, tuple) else (spec,)
    if not types and not allow_empty:
        return [f"{name} must name at least one exception type, got ()"]
    if all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        return []
    return [f"{name} must be an exception type or a tuple of them, got {spec!r}"]


class State(enum.Enum):
    """The state of a circuit breaker."""

    CLOSED = "closed"
    """Calls pass; their outcomes feed the window."""
    OPEN = "open"
    """Calls are rejected at once until ``open_duration`` has passed."""
    HALF_OPEN = "half_open"
    """A few probe calls pass to test whether the dependency has recovered."""
    FORCED_OPEN = "forced_open"
    """An operator opened the circuit: every call is rejected until ``reset()``."""
    DISABLED = "disabled"
    """An operator disabled the breaker: every call passes, nothing is recorded."""


CLOSED = State.CLOSED
OPEN = State.OPEN
HALF_OPEN = State.HALF_OPEN
FORCED_OPEN = State.FORCED_OPEN
DISABLED = State.DISABLED

# The moves the machine makes by itself. Operator actions may go anywhere.
_ALLOWED = frozenset({(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)})


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A snapshot of a breaker's window and counters.

    Attributes:
        state: The state when the snapshot was taken.
        calls: Calls in the window.
        failures: Failed calls in the window.
        slow_calls: Slow calls in the window (failed or not).
        failure_rate: ``failures / calls`` (0.0 for an empty window).
        slow_call_rate: ``slow_calls / calls`` (0.0 for an empty window).
        rejected: Calls rejected since the breaker was built (in shadow mode,
            the calls it would have rejected).
        consecutive_openings: Times it opened since it was last CLOSED.
    """

    state: State
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    rejected: int
    consecutive_openings: int


class BreakerState:
    """The mutable state of one circuit breaker (see the module docstring)."""

    __slots__ = (
        "_admit",
        "_broken",
        "_eval_at",
        "_fail_thr",
        "_gen",
        "_half_open_calls",
        "_half_open_max_wait",
        "_ignore",
        "_ignore_fn",
        "_judge",
        "_listeners",
        "_lock",
        "_max_wait_cfg",
        "_min_calls",
        "_now",
        "_observers",
        "_open_duration",
        "_open_fn",
        "_open_until",
        "_openings",
        "_probe_gate",
        "_probe_seq",
        "_probe_started",
        "_probes_admitted",
        "_probes_succeeded",
        "_record",
        "_record_all",
        "_record_broken",
        "_reject_until",
        "_rejections",
        "_shadow",
        "_slow_dur",
        "_slow_thr",
        "_state",
        "_tick_gen",
        "_track_slow",
        "_window",
        "name",
        "tick",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        clock: Clock,
        listeners: Listeners,
    ) -> None:
        self.name = name
        self._now = clock.monotonic
        self._listeners = listeners
        self._lock = threading.Lock()

        self._fail_thr = config.failure_rate_threshold
        self._slow_thr = config.slow_call_rate_threshold
        self._slow_dur = config.slow_call_duration
        # A slow-call threshold of 1.0 is the documented "slow calls never open it".
        self._track_slow = config.slow_call_rate_threshold < 1.0
        window = config.window.build()
        self._window = window
        if isinstance(window, CountRing):
            #: Record one fast success in the count window: ``tick() -> position``.
            self.tick: Callable[[], int] | None = window.seq.__next__
            # Like resilience4j: a count window smaller than minimum_calls decides when full.
            self._min_calls = min(config.minimum_calls, config.window.size)  # type: ignore[union-attr]
        else:
            self.tick = None
            self._min_calls = config.minimum_calls
        self._half_open_calls = config.half_open_calls
        self._max_wait_cfg = config.half_open_max_wait
        od = config.open_duration
        self._open_fn = od if callable(od) else None
        # The fixed duration, or the last good value of the schedule (seeded by
        # the config check, which calls it once with 1).
        self._open_duration = float(od(1)) if callable(od) else float(od)
        self._ignore, self._ignore_fn = _split_ignore(config.ignore)
        #: ``record_result``: ``None`` (the usual case) keeps the drivers' fast path.
        self._judge: Callable[[object], bool] | None = config.record_result
        self._record = config.record
        self._record_all = config.record is Exception
        self._shadow = config.shadow

        self._state = CLOSED
        self._gen = 0
        self._admit: int | None = 0
        self._reject_until = -math.inf
        self._tick_gen: int | None = None
        self._eval_at = -1
        self._open_until = 0.0
        self._openings = 0
        # The probes in flight: their permits, and when each was admitted.
        self._probe_started: dict[int, float] = {}
        self._probe_seq = 0
        self._record_broken = False
        self._broken: set[str] = set()  # the predicates that raised, each reported once
        self._half_open_max_wait = 0.0
        self._probes_admitted = 0
        self._probes_succeeded = 0
        self._rejections = itertools.count()
        # Hooks for a store shared by replicas (integrations/redis/breaker.py): whether
        # this replica may send probes, and who hears of each transition.
        self._probe_gate = True
        self._observers: tuple[Callable[[StateChanged], None], ...] = ()
        self._set_fast_paths()

    # -- what drivers read ---------------------------------------------------

    @property
    def times_calls(self) -> bool:
        """Whether outcomes need a duration (only to tell slow calls from fast ones)."""
        return self._track_slow

    @property
    def shadow(self) -> bool:
        """Whether the breaker only computes decisions and never rejects a call."""
        return self._shadow

    @property
    def state(self) -> State:
        """The current state, after any move that time alone has made due."""
        state = self._state
        if state is OPEN or state is HALF_OPEN:
            events: list[Event] = []
            with self._lock:
                self._advance_locked(self._now(), events)
                state = self._state
            self._emit(events)
        return state

    def metrics(self) -> BreakerMetrics:
        """Return a snapshot of the window and counters."""
        with self._lock:
            calls, failures, slow = self._window.counts(self._now())
            return BreakerMetrics(
                state=self._state,
                calls=calls,
                failures=failures,
                slow_calls=slow,
                failure_rate=failures / calls if calls else 0.0,
                slow_call_rate=slow / calls if calls else 0.0,
                rejected=int(repr(self._rejections)[6:-1]),
                consecutive_openings=self._openings,
            )

    # -- the permission protocol ---------------------------------------------

    def acquire(self) -> int:
        """Admit a call and return its permit, or raise :class:`CircuitOpenError`.

        In shadow mode nothing is raised: a would-be rejection is reported as a
        :class:`CallRejected` event with ``shadow=True`` and the call goes ahead
        with a permit whose outcome is not recorded.
        """
        # One attribute read is atomic: CLOSED and DISABLED admit without the lock.
        permit = self._admit
        if permit is not None:
            return permit
        return self._acquire_slow()

    def _acquire_slow(self) -> int:
        now = self._now()
        if now < self._reject_until:
            # An open circuit stays open until _reject_until: rejecting needs no
            # lock, and a stale read at worst rejects a call that raced the move
            # to HALF_OPEN by a microsecond.
            raise self.rejection(now)
        events: list[Event] = []
        self._lock.acquire()
        try:
            now = self._now()
            self._advance_locked(now, events)
            state = self._state
            permit: int | None
            if (
                state is HALF_OPEN
                and self._probes_admitted < self._half_open_calls
                and self._probe_gate
            ):
                self._probes_admitted += 1
                self._probe_seq += 1
                permit = self._gen + self._probe_seq * PROBE
                self._probe_started[permit] = now
            else:
                permit = self._admit  # moved to CLOSED or DISABLED meanwhile?
                if permit is None:
                    next(self._rejections)
                    retry_after = self._open_until - now if state is OPEN else None
                    if self._listeners._registrations:
                        events.append(self._rejected(now, state, retry_after))
        finally:
            self._lock.release()
        if events:
            self._emit(events)
        if permit is not None:
            return permit
        if self._shadow:
            return NO_RECORD
        raise fast_circuit_open(self.name, retry_after)

    def rejection(self, now: float) -> BaseException:
        """Count and report a rejection while OPEN or FORCED_OPEN; return the error.

        Drivers call this when ``now < _reject_until`` and raise what it returns
        (raising here would add a frame to every rejection's traceback).
        """
        next(self._rejections)
        state = self._state
        retry_after = None if state is FORCED_OPEN else self._open_until - now
        if self._listeners._registrations:
            self._listeners.emit(self._rejected(now, state, retry_after))
        # fast_circuit_open(), inlined: this is the one call of an outage's hot path.
        exc: CircuitOpenError = _new_exception(CircuitOpenError)
        exc.name = self.name
        exc.retry_after = retry_after
        return exc

    def on_success(self, permit: int, duration: float) -> None:
        """Record a call that returned; ``duration`` in seconds tells if it was slow."""
        if permit != self._gen and permit not in self._probe_started:
            return  # stale generation, a stale probe, or NO_RECORD
        if self._track_slow and duration > self._slow_dur:
            self._record_outcome(permit, SLOW)
        elif permit == self._tick_gen:
            if self.tick() == self._eval_at:  # type: ignore[misc]
                self.on_minimum_calls(permit)
        else:
            self._record_outcome(permit, 0)

    def on_result(self, permit: int, result: object, duration: float) -> None:
        """Record a call that returned ``result``: failed if ``record_result`` says so."""
        judge = self._judge
        if judge is None or not self._asks(judge, result, "record_result"):
            self.on_success(permit, duration)
            return
        if permit != self._gen and permit not in self._probe_started:
            return
        slow = SLOW if self._track_slow and duration > self._slow_dur else 0
        self._record_outcome(permit, FAILURE | slow)

    def on_minimum_calls(self, permit: int) -> None:
        """Decide once the window has just filled to ``minimum_calls`` with a success.

        A success never raises a count window's rates, except by bringing the
        window to ``minimum_calls``, where a decision is first due.
        """
        events: list[Event] = []
        with self._lock:
            if permit == self._gen and self._state is CLOSED:
                calls, failures, slow = self._window.counts(0.0)
                self._decide_locked(calls, failures, slow, events)
        self._emit(events)

    def on_error(self, permit: int, exc: BaseException, duration: float) -> None:
        """Record a call that raised ``exc``, classified by ``ignore`` and ``record``.

        ``ignore`` wins over ``record``: an exception matching both counts as
        neither success nor failure. One not matching ``record`` is a success.
        Exceptions that are not :class:`Exception` (cancellation, interrupts)
        count as neither and free the call's slot.
        """
        if permit != self._gen and permit not in self._probe_started:
            return
        if (
            not isinstance(exc, Exception)
            or (self._ignore is not None and isinstance(exc, self._ignore))
            or (self._ignore_fn is not None and self._asks(self._ignore_fn, exc, "ignore"))
        ):
            self.release(permit)
            return
        if self._record_all or self._matches_record(exc):
            slow = SLOW if self._track_slow and duration > self._slow_dur else 0
            self._record_outcome(permit, FAILURE | slow)
        else:
            self.on_success(permit, duration)

    def release(self, permit: int) -> None:
        """End a call that counts as neither success nor failure, freeing its slot."""
        if permit not in self._probe_started:
            return  # only a probe holds a slot
        with self._lock:
            if self._probe_started.pop(permit, None) is not None:
                self._probes_admitted -= 1

    # -- operator controls ---------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (or :meth:`disable`)."""
        self._operator(FORCED_OPEN, "forced open")

    def disable(self) -> None:
        """Admit every call and record nothing until :meth:`reset` (or :meth:`force_open`)."""
        self._operator(DISABLED, "disabled")

    def reset(self) -> None:
        """Return to CLOSED with an empty window, forgetting past openings."""
        self._operator(CLOSED, "reset")

    def _operator(self, new: State, reason: str) -> None:
        events: list[Event] = []
        with self._lock:
            self._openings = 0
            self._transition_locked(new, reason, self._now(), events)
        self._emit(events)

    # -- internals (a *_locked method's caller holds the lock) ----------------

    def _asks(self, predicate: Callable[[Any], bool], value: object, option: str) -> bool:
        """``predicate(value)``; a predicate that raises answers no, and is reported once.

        No: the call is then classified as if the option were not set, and
        the caller's own answer or error stands.
        """
        try:
            return bool(predicate(value))
        except Exception:
            if option not in self._broken:
                self._broken.add(option)
                _log.exception(
                    "breaker %r: its %s= predicate raised; it is taken as false (logged once)",
                    self.name,
                    option,
                )
            return False

    def _matches_record(self, exc: BaseException) -> bool:
        record = self._record
        if isinstance(record, (type, tuple)):
            return isinstance(exc, record)
        try:
            return bool(record(exc))
        except Exception:
            # A broken predicate must not replace the caller's error, nor leave
            # a probe's slot taken: the call counts as failed, and it is said once.
            if not self._record_broken:
                self._record_broken = True
                _log.exception(
                    "breaker %r: its record= predicate raised; calls it cannot classify "
                    "count as failures (logged once)",
                    self.name,
                )
            return True

    def _record_outcome(self, permit: int, outcome: int) -> None:
        events: list[Event] = []
        # acquire/release rather than `with`: half the cost, on every failure.
        self._lock.acquire()
        try:
            probe = self._probe_started.pop(permit, None)
            if permit != self._gen and probe is None:
                return
            state = self._state
            if state is CLOSED:
                calls, failures, slow = self._window.record(outcome, self._now())
                # A count window's rates only rise with a failed or slow call, or
                # as it fills up to minimum_calls; a time window's also as old
                # slices leave it, so that one is checked on every call.
                if calls >= self._min_calls and (
                    outcome or calls == self._min_calls or self.tick is None
                ):
                    self._decide_locked(calls, failures, slow, events)
            elif state is HALF_OPEN:
                if outcome:
                    reason = "probe failed" if outcome & FAILURE else "probe was slow"
                    self._transition_locked(OPEN, reason, self._now(), events)
                else:
                    self._probes_succeeded += 1
                    if self._probes_succeeded >= self._half_open_calls:
                        self._transition_locked(CLOSED, "probes succeeded", self._now(), events)
        finally:
            self._lock.release()
        if events:
            self._emit(events)

    def verdict(self, calls: int, failures: int, slow: int) -> str | None:
        """Return why counts like these open the circuit (``"failure rate"``...), or ``None``.

        The same rule the breaker applies to its own window; a shared store
        applies it to the fleet's counts.
        """
        if calls < self._min_calls or calls <= 0:
            return None
        if failures / calls >= self._fail_thr:
            return "failure rate"
        if self._track_slow and slow / calls >= self._slow_thr:
            return "slow-call rate"
        return None

    def _decide_locked(self, calls: int, failures: int, slow: int, events: list[Event]) -> None:
        reason = self.verdict(calls, failures, slow)
        if reason is not None:
            self._transition_locked(
                OPEN, reason, self._now(), events, counts=(calls, failures, slow)
            )

    def _advance_locked(self, now: float, events: list[Event]) -> None:
        """Make the moves that time alone has made due."""
        state = self._state
        if state is OPEN and now >= self._open_until:
            self._transition_locked(HALF_OPEN, "open duration elapsed", now, events)
        elif (
            state is HALF_OPEN
            and self._probe_started
            and now - min(self._probe_started.values()) >= self._half_open_max_wait
        ):
            # A probe that never returns must not keep the circuit half-open
            # forever: it counts as a failed probe.
            self._transition_locked(OPEN, "probe timed out", now, events)

    def _transition_locked(
        self,
        new: State,
        reason: str,
        now: float,
        events: list[Event],
        *,
        counts: tuple[int, int, int] | None = None,
        until: float | None = None,
    ) -> None:
        old = self._state
        if old is new and new is not CLOSED:
            return
        if __debug__ and reason in _AUTOMATIC:
            assert (old, new) in _ALLOWED, f"illegal breaker move {old} -> {new}"  # noqa: S101
        if counts is None:
            counts = self._window.counts(now)
        self._state = new
        self._gen += 1
        self._probe_started.clear()  # their permits are stale now
        if new is OPEN:
            self._openings += 1
            duration = self._next_open_duration() if until is None else max(until - now, 0.0)
            self._open_until = now + duration
            self._half_open_max_wait = (
                duration if self._max_wait_cfg is None else self._max_wait_cfg
            )
        elif new is HALF_OPEN:
            self._probes_admitted = 0
            self._probes_succeeded = 0
        elif new is CLOSED:
            self._openings = 0
            self._window.reset()
        self._set_fast_paths()
        if (self._listeners._registrations or self._observers) and old is not new:
            calls, failures, slow = counts
            events.append(
                StateChanged(
                    name=self.name,
                    at=now,
                    old=old,
                    new=new,
                    reason=reason,
                    failure_rate=failures / calls if calls else 0.0,
                    slow_call_rate=slow / calls if calls else 0.0,
                    failure_rate_threshold=self._fail_thr,
                    slow_call_rate_threshold=self._slow_thr,
                    calls=calls,
                    shadow=self._shadow,
                )
            )

    def _set_fast_paths(self) -> None:
        state = self._state
        # Drivers reject without the lock while now < _reject_until.
        if self._shadow or (state is not OPEN and state is not FORCED_OPEN):
            self._reject_until = -math.inf
        else:
            self._reject_until = math.inf if state is FORCED_OPEN else self._open_until
        self._admit = self._gen if state is CLOSED else NO_RECORD if state is DISABLED else None
        window = self._window
        if state is CLOSED and isinstance(window, CountRing):
            self._eval_at = window.start + self._min_calls - 1
            # A success whose permit is this generation may be counted with
            # tick(), lock-free (drivers that time calls go through on_success).
            self._tick_gen = self._gen
        else:
            self._tick_gen = None

    def _rejected(self, now: float, state: State, retry_after: float | None) -> CallRejected:
        return CallRejected(
            name=self.name, at=now, state=state, retry_after=retry_after, shadow=self._shadow
        )

    def _next_open_duration(self) -> float:
        fn = self._open_fn
        if fn is None:
            return self._open_duration
        try:
            value = float(fn(self._openings))
        except Exception:
            _log.exception("open_duration(%d) of breaker %r raised", self._openings, self.name)
            return self._open_duration
        if not math.isfinite(value) or value < 0:
            _log.error(
                "open_duration(%d) of breaker %r returned %r; keeping %rs",
                self._openings,
                self.name,
                value,
                self._open_duration,
            )
            return self._open_duration
        self._open_duration = value
        return value

    def _emit(self, events: list[Event]) -> None:
        emit = self._listeners.emit
        observers = self._observers
        for event in events:
            emit(event)
            if observers and isinstance(event, StateChanged):
                for observer in observers:
                    try:
                        observer(event)
                    except Exception:
                        _log.exception("observer %r of breaker %r raised", observer, self.name)

    # -- sharing with other replicas (see integrations/redis/breaker.py) ---------------

    def add_observer(self, observer: Callable[[StateChanged], None]) -> Callable[[], None]:
        """Call ``observer`` with every state change, after the lock is released.

        Returns:
            A function that removes it again.
        """
        with self._lock:
            self._observers = (*self._observers, observer)

        def remove() -> None:
            with self._lock:
                self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    @property
    def probes_in_flight(self) -> int:
        """Probes admitted in this HALF_OPEN period that have not ended."""
        return len(self._probe_started)

    @property
    def open_until(self) -> float:
        """When the current (or last) OPEN period ends, on this breaker's clock."""
        return self._open_until

    def lifetime_counts(self) -> tuple[int, int, int]:
        """Return ``(calls, failures, slow)`` recorded in the window since it was built.

        These are the CLOSED state's outcomes (probes decide on their own, and
        are not counted). Never reset; a shared store sends the differences between two readings,
        so recording a call costs nothing more for sharing.
        """
        with self._lock:
            return self._window.totals()

    def set_probe_gate(self, allowed: bool) -> None:
        """Allow or stop this replica's probes in HALF_OPEN (a fleet-wide lease decides)."""
        self._probe_gate = allowed

    def fleet_open(self, until: float, reason: str = "opened by the fleet") -> bool:
        """Open the circuit until ``until`` (this clock), because the fleet says so.

        Does nothing while FORCED_OPEN or DISABLED, or when already OPEN.

        Returns:
            Whether the state changed.
        """
        events: list[Event] = []
        changed = False
        with self._lock:
            now = self._now()
            if until > now and self._state in (CLOSED, HALF_OPEN):
                self._transition_locked(OPEN, reason, now, events, until=until)
                changed = True
        self._emit(events)
        return changed

    def fleet_close(self, reason: str = "closed by the fleet") -> bool:
        """Close an OPEN or HALF_OPEN circuit because the fleet's probes succeeded.

        Returns:
            Whether the state changed.
        """
        events: list[Event] = []
        changed = False
        with self._lock:
            if self._state in (OPEN, HALF_OPEN):
                self._transition_locked(CLOSED, reason, self._now(), events)
                changed = True
        self._emit(events)
        return changed


_AUTOMATIC = frozenset(
    {
        "failure rate",
        "slow-call rate",
        "probe failed",
        "probe was slow",
        "probes succeeded",
        "open duration elapsed",
        "probe timed out",
    }
)


def _split_ignore(
    ignore: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
) -> tuple[
    type[BaseException] | tuple[type[BaseException], ...] | None,
    Callable[[BaseException], bool] | None,
]:
    """``ignore`` as exception types (for ``isinstance``) or as a predicate."""
    if callable(ignore) and not isinstance(ignore, type):
        return None, ignore
    return ignore or None, None
