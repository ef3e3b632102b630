"""Standard :mod:`logging` records for the decisions an operator must hear about.

:class:`LoggingListener` turns events into log records with structured fields
in ``extra``, so any handler and formatter works unchanged: plain text, a JSON
formatter, or structlog's ``ProcessorFormatter`` (its ``ExtraAdder`` picks the
fields up)::

    from seawall.integrations.logging import LoggingListener

    LoggingListener().install()

What is logged, on the ``"seawall"`` logger by default:

============================  =========  ==========================================
Event                         Level      Rate
============================  =========  ==========================================
a circuit opens               ERROR      every time (failure or slow-call rate,
                                         threshold, calls in the window)
a circuit goes half-open      INFO       every time
a circuit closes              INFO       every time
an operator forces/disables   WARNING    every time
a shadow breaker's decision   INFO       every time
a retry gives up              WARNING    once per ``period`` per dependency and reason
a bulkhead refuses a call     WARNING    once per ``period`` per bulkhead
an adaptive limit refuses     WARNING    once per ``period`` per limit
a throttle sheds a call       WARNING    once per ``period`` per throttle
load shedding refuses         WARNING    once per ``period`` per shedder, priority
a fallback fails              WARNING    once per ``period`` per dependency
an outbox drops an entry      WARNING    once per ``period`` per outbox and reason
sustained degradation         WARNING    once per ``period`` per dependency
recovery from degradation     INFO       once
an adaptive limit is halved   INFO       once per ``period`` per limit (then DEBUG)
an adaptive limit moves       DEBUG      every time (only when DEBUG is enabled)
a retry is scheduled          DEBUG      every time (only when DEBUG is enabled)
============================  =========  ==========================================

An adaptive limit moves at the end of most windows of calls (about once a
second under load): that is its normal work, so a move is DEBUG. A cut to
half or less of the previous limit in one window (AIMD backing off on a drop,
with ``backoff_ratio=0.5``, or a custom algorithm's) says the dependency just
timed out or refused calls: that one is INFO, at most once per ``period`` per
limit (``seawall.suppressed`` counts the cuts in between, logged at DEBUG).
The refusals that follow a low limit are the WARNING.

Rate-limited records carry ``seawall.suppressed``: how many like them were not
logged since the previous one. Nothing is logged per call on a healthy path.

Field names are dotted (``seawall.dependency``), like OpenTelemetry attribute
names. :mod:`logging` stores ``extra`` keys as record attributes whatever they
look like; a format string reads one as ``%(seawall.dependency)s``, and JSON
formatters emit the key as is.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Final

from seawall._clock import MONOTONIC, Clock
from seawall.core.breaker_state import State
from seawall.errors import ConfigError
from seawall.events import (
    LISTENERS,
    BulkheadRejected,
    CallCompleted,
    Event,
    FallbackFailed,
    FallbackUsed,
    GiveUpReason,
    LimitChanged,
    LimitRejected,
    Listeners,
    LoadShed,
    OutboxDropped,
    RetryGaveUp,
    RetryScheduled,
    StateChanged,
    ThrottleRejected,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_DEGRADED_AFTER",
    "DEFAULT_DEGRADED_CALLS",
    "DEFAULT_PERIOD",
    "LoggingListener",
]

DEFAULT_PERIOD: Final = 60.0
"""Seconds between two records of one rate-limited kind for one dependency."""
DEFAULT_DEGRADED_AFTER: Final = 30.0
"""Seconds of fallback answers, with no success between, that make "sustained degradation"."""
DEFAULT_DEGRADED_CALLS: Final = 100
"""Fallback answers in a row that make "sustained degradation", whichever comes first."""

_GIVE_UP_TEXT = {
    GiveUpReason.EXHAUSTED: "every attempt used",
    GiveUpReason.BUDGET: "the retry budget is empty",
    GiveUpReason.DEADLINE: "the next delay would end past the deadline",
    GiveUpReason.MAX_ELAPSED: "the next delay would end past max_elapsed",
}


class _Streak:
    """A dependency answering from its fallback since ``since``, with no success between."""

    __slots__ = ("calls", "kind", "since", "warned_at")

    def __init__(self, since: float, kind: str) -> None:
        self.since = since
        self.kind = kind
        self.calls = 0
        self.warned_at: float | None = None


class LoggingListener:
    """Log records for circuit changes, give-ups, degradation and drops (see the module).

    Args:
        logger: Where records go. Default ``logging.getLogger("seawall")``.
        period: Seconds between two records of one rate-limited kind (say,
            give-ups of one dependency for one reason). Default 60.
        degraded_after: Warn of sustained degradation once a dependency has
            answered from its fallback, with no success between, for this many
            seconds... Default 30.
        degraded_calls: ...or this many calls in a row, whichever comes first.
            Default 100.
        clock: Time source for the rates and durations above; default the real
            monotonic clock.

    Raises:
        ConfigError: ``period`` or ``degraded_after`` is negative or not a
            number, or ``degraded_calls`` is below 1.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_degraded_after",
        "_degraded_calls",
        "_lock",
        "_logger",
        "_now",
        "_period",
        "_seen",
        "_streaks",
        "_table",
    )

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        period: float = DEFAULT_PERIOD,
        degraded_after: float = DEFAULT_DEGRADED_AFTER,
        degraded_calls: int = DEFAULT_DEGRADED_CALLS,
        clock: Clock | None = None,
    ) -> None:
        errors = [
            f"{name} must be a number of seconds >= 0, got {value!r}"
            for name, value in (("period", period), ("degraded_after", degraded_after))
            if not isinstance(value, (int, float)) or not 0 <= value < math.inf
        ]
        if not isinstance(degraded_calls, int) or degraded_calls < 1:
            errors.append(f"degraded_calls must be an integer >= 1, got {degraded_calls!r}")
        if errors:
            raise ConfigError("; ".join(errors))
        self._logger = logging.getLogger("seawall") if logger is None else logger
        self._period = float(period)
        self._degraded_after = float(degraded_after)
        self._degraded_calls = degraded_calls
        self._now = (MONOTONIC if clock is None else clock).monotonic
        self._lock = threading.Lock()
        # Rate limiting: key -> [time of the last record, events suppressed since].
        self._seen: dict[tuple[str, ...], list[float]] = {}
        self._streaks: dict[str, _Streak] = {}
        self._table = self._handlers()

    @property
    def logger(self) -> logging.Logger:
        """The logger records go to."""
        return self._logger

    def install(self, listeners: Listeners | None = None) -> Callable[[], None]:
        """Subscribe to the events of ``listeners`` (default :data:`~seawall.events.LISTENERS`).

        Returns:
            A function that unsubscribes again.
        """
        target = LISTENERS if listeners is None else listeners
        removers = [target.add(fn, event_type) for event_type, fn in self._table.items()]

        def remove() -> None:
            for r in removers:
                r()

        return remove

    def __call__(self, event: Event, /) -> None:
        """Handle any event (for ``Listeners.add(listener)``; :meth:`install` is cheaper)."""
        handler = self._table.get(type(event))
        if handler is not None:
            handler(event)

    def _handlers(self) -> dict[type[Event], Callable[[Any], None]]:
        return {
            StateChanged: self._on_state_changed,
            RetryGaveUp: self._on_gave_up,
            RetryScheduled: self._on_retry_scheduled,
            BulkheadRejected: self._on_bulkhead_rejected,
            LimitRejected: self._on_limit_rejected,
            LimitChanged: self._on_limit_changed,
            ThrottleRejected: self._on_throttle_rejected,
            LoadShed: self._on_load_shed,
            FallbackUsed: self._on_fallback_used,
            FallbackFailed: self._on_fallback_failed,
            CallCompleted: self._on_completed,
            OutboxDropped: self._on_dropped,
        }

    # -- circuit breakers ------------------------------------------------------

    def _on_state_changed(self, event: StateChanged) -> None:
        new = event.new
        slow = event.reason.startswith("slow")
        extra = _fields(
            event,
            state=str(new.value),
            previous_state=str(event.old.value),
            reason=event.reason,
            failure_rate=event.failure_rate,
            slow_call_rate=event.slow_call_rate,
            failure_rate_threshold=event.failure_rate_threshold,
            slow_call_rate_threshold=event.slow_call_rate_threshold,
            rate=event.slow_call_rate if slow else event.failure_rate,
            threshold=event.slow_call_rate_threshold if slow else event.failure_rate_threshold,
            calls=event.calls,
            shadow=event.shadow,
        )
        log = self._logger.log
        if event.shadow:
            log(
                logging.INFO,
                "shadow circuit %r would go %s (%s)",
                event.name,
                new.name,
                event.reason,
                extra=extra,
            )
        elif new is State.OPEN and event.reason in {"failure rate", "slow-call rate"}:
            log(
                logging.ERROR,
                "circuit %r OPEN: %s %.1f%% >= threshold %.1f%% over %d calls",
                event.name,
                event.reason,
                extra["seawall.rate"] * 100,
                extra["seawall.threshold"] * 100,
                event.calls,
                extra=extra,
            )
        elif new is State.OPEN:
            log(logging.ERROR, "circuit %r OPEN again: %s", event.name, event.reason, extra=extra)
        elif new is State.FORCED_OPEN or new is State.DISABLED:
            log(
                logging.WARNING,
                "circuit %r %s: %s",
                event.name,
                new.name,
                event.reason,
                extra=extra,
            )
        else:  # HALF_OPEN, CLOSED
            log(logging.INFO, "circuit %r %s: %s", event.name, new.name, event.reason, extra=extra)

    # -- retries -----------------------------------------------------------------

    def _on_gave_up(self, event: RetryGaveUp) -> None:
        suppressed = self._admit(("gave_up", event.name, event.reason.value))
        if suppressed is None:
            return
        exc = event.exception
        self._logger.warning(
            "retry %r gave up after %d attempts: %s (%s)",
            event.name,
            event.attempts,
            _GIVE_UP_TEXT.get(event.reason, event.reason.value),
            "a retried result" if exc is None else _describe(exc),
            extra=_fields(
                event,
                reason=event.reason.value,
                attempts=event.attempts,
                error_type=None if exc is None else type(exc).__name__,
                error=None if exc is None else str(exc),
                suppressed=suppressed,
            ),
        )

    def _on_retry_scheduled(self, event: RetryScheduled) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.DEBUG):
            return
        exc = event.exception
        logger.debug(
            "retry %r: attempt %d failed (%s); next in %.3gs",
            event.name,
            event.attempt,
            "a retried result" if exc is None else _describe(exc),
            event.delay,
            extra=_fields(
                event,
                attempt=event.attempt,
                delay=event.delay,
                retry_after=event.retry_after,
                error_type=None if exc is None else type(exc).__name__,
            ),
        )

    # -- bulkheads, fallbacks, outboxes --------------------------------------------

    def _on_bulkhead_rejected(self, event: BulkheadRejected) -> None:
        suppressed = self._admit(("bulkhead", event.name))
        if suppressed is None:
            return
        self._logger.warning(
            "bulkhead %r full: all %d permits in use, call refused after %.3gs",
            event.name,
            event.max_concurrent,
            event.waited,
            extra=_fields(
                event,
                max_concurrent=event.max_concurrent,
                waited=event.waited,
                suppressed=suppressed,
            ),
        )

    def _on_fallback_failed(self, event: FallbackFailed) -> None:
        suppressed = self._admit(("fallback_failed", event.name))
        if suppressed is None:
            return
        error = event.error
        self._logger.warning(
            "fallback (%s) of %r could not answer: %s; the call failed with %s",
            event.kind,
            event.name,
            "no error" if error is None else _describe(error),
            _describe(event.cause),
            extra=_fields(
                event,
                fallback_kind=event.kind,
                cause_type=type(event.cause).__name__,
                error_type=None if error is None else type(error).__name__,
                error=None if error is None else str(error),
                suppressed=suppressed,
            ),
        )

    def _on_dropped(self, event: OutboxDropped) -> None:
        suppressed = self._admit(("dropped", event.name, event.policy))
        if suppressed is None:
            return
        self._logger.warning(
            "outbox %r dropped entry %s (%s; %d pending)",
            event.name,
            event.entry_id,
            event.policy,
            event.depth,
            extra=_fields(
                event,
                reason=event.policy,
                entry_id=event.entry_id,
                depth=event.depth,
                suppressed=suppressed,
            ),
        )

    # -- adaptive limits, throttles, load shedding ----------------------------------

    def _on_limit_rejected(self, event: LimitRejected) -> None:
        suppressed = self._admit(("limit", event.name))
        if suppressed is None:
            return
        self._logger.warning(
            "adaptive limit %r reached: %d calls in flight, call refused",
            event.name,
            event.limit,
            extra=_fields(event, limit=event.limit, suppressed=suppressed),
        )

    def _on_limit_changed(self, event: LimitChanged) -> None:
        # Once a window of calls: a comparison, then nothing unless DEBUG is on.
        old, new = event.old, event.new
        halved = new * 2 <= old
        suppressed = self._admit(("limit_halved", event.name)) if halved else None
        logger = self._logger
        if suppressed is None and not logger.isEnabledFor(logging.DEBUG):
            return
        extra = _fields(
            event,
            limit=new,
            previous_limit=old,
            rtt=event.rtt,
            in_flight=event.in_flight,
            dropped=event.dropped,
        )
        if suppressed is not None:
            extra["seawall.suppressed"] = suppressed
        logger.log(
            logging.DEBUG if suppressed is None else logging.INFO,
            "adaptive limit %r %s from %d to %d (rtt %.3gs, %d in flight%s)",
            event.name,
            "cut" if halved else "raised" if new > old else "lowered",
            old,
            new,
            event.rtt,
            event.in_flight,
            ", a call dropped" if event.dropped else "",
            extra=extra,
        )

    def _on_throttle_rejected(self, event: ThrottleRejected) -> None:
        suppressed = self._admit(("throttle", event.name))
        if suppressed is None:
            return
        self._logger.warning(
            "throttle %r shed a call: rejection probability %.1f%% "
            "(%d requests, %d accepted in the window)",
            event.name,
            event.probability * 100,
            event.requests,
            event.accepts,
            extra=_fields(
                event,
                probability=event.probability,
                requests=event.requests,
                accepts=event.accepts,
                suppressed=suppressed,
            ),
        )

    def _on_load_shed(self, event: LoadShed) -> None:
        suppressed = self._admit(("load_shed", event.name, str(event.priority)))
        if suppressed is None:
            return
        self._logger.warning(
            "load shedding %r refused a priority %d request to %s (limit %d, %d in flight)",
            event.name,
            event.priority,
            event.route,
            event.limit,
            event.in_flight,
            extra=_fields(
                event,
                route=event.route,
                priority=event.priority,
                limit=event.limit,
                in_flight=event.in_flight,
                suppressed=suppressed,
            ),
        )

    # -- sustained degradation ---------------------------------------------------

    def _on_fallback_used(self, event: FallbackUsed) -> None:
        now = self._now()
        with self._lock:
            streak = self._streaks.get(event.name)
            if streak is None:
                streak = self._streaks[event.name] = _Streak(now, event.kind)
            streak.calls += 1
            streak.kind = event.kind
            degraded_for = now - streak.since
            due = (
                degraded_for >= self._degraded_after or streak.calls >= self._degraded_calls
            ) and (streak.warned_at is None or now - streak.warned_at >= self._period)
            if due:
                streak.warned_at = now
            calls = streak.calls
        if due:
            self._logger.warning(
                "dependency %r degraded for %.0fs: %d calls in a row answered by its %s fallback",
                event.name,
                degraded_for,
                calls,
                event.kind,
                extra=_fields(
                    event,
                    fallback_kind=event.kind,
                    degraded_for=degraded_for,
                    degraded_calls=calls,
                    cause_type=type(event.cause).__name__,
                ),
            )

    def _on_completed(self, event: CallCompleted) -> None:
        # On every call's path: one dict truth test unless a streak is open.
        if not self._streaks or event.outcome != "success":
            return
        with self._lock:
            streak = self._streaks.pop(event.name, None)
        if streak is None or streak.warned_at is None:
            return
        degraded_for = self._now() - streak.since
        self._logger.info(
            "dependency %r recovered after %.0fs degraded (%d fallback answers)",
            event.name,
            degraded_for,
            streak.calls,
            extra=_fields(
                event,
                fallback_kind=streak.kind,
                degraded_for=degraded_for,
                degraded_calls=streak.calls,
            ),
        )

    # -- rate limiting -------------------------------------------------------------

    def _admit(self, key: tuple[str, ...]) -> int | None:
        """Return how many ``key`` records were suppressed if one may go now, else ``None``."""
        now = self._now()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or not 0 <= now - seen[0] < self._period:
                self._seen[key] = [now, 0]
                return 0 if seen is None else int(seen[1])
            seen[1] += 1
            return None

    def __repr__(self) -> str:
        return f"<LoggingListener {self._logger.name!r} period={self._period}>"


def _fields(event: Event, **values: Any) -> dict[str, Any]:
    """Return a record's ``extra``: ``seawall.*`` fields, each a str, number, bool or None."""
    extra: dict[str, Any] = {
        "seawall.event": type(event).__name__,
        "seawall.dependency": event.name,
    }
    for key, value in values.items():
        extra[f"seawall.{key}"] = value
    return extra


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
