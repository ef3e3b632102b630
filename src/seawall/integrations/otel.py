"""OpenTelemetry span events, span attributes and metrics, on the OpenTelemetry API.

:class:`OtelListener` does two things, each optional:

* **Traces.** Each decision taken inside a call (a retry scheduled or given up,
  a rejection by a circuit, a bulkhead, an adaptive limit or a throttle, a
  timeout, a fallback) becomes a span event on the *current* span, the one the
  caller's instrumentation opened around the call; a circuit's state change
  and an adaptive limit's move become one on the span of the call that caused
  it, and a request refused by load shedding one on the server's request
  span. When a call through a :class:`~seawall.Dependency` ends, the current
  span gets the attributes ``seawall.dependency`` and ``seawall.outcome``.
  Nothing is done when no span is recording.
* **Metrics.** Instruments that mirror :mod:`seawall.integrations.prometheus`:
  an OpenTelemetry-to-Prometheus translation (the Prometheus exporter or the
  Collector: dots become underscores, counters get ``_total``, unit ``s`` gets
  ``_seconds``) yields the same names and labels, so the shipped alerts and
  dashboard work either way. ``dependency.calls`` becomes
  ``dependency_calls_total``, ``dependency.call.duration`` (unit ``s``)
  ``dependency_call_duration_seconds``, ``circuit_breaker.state``
  ``circuit_breaker_state``, and so on. Metric attributes are the Prometheus
  label names (``dependency``, ``outcome``, ``state``, ``reason``, ``kind``,
  ``direction``, ``priority``); span attributes are namespaced
  (``seawall.dependency``).

Cost: counts are kept by the listener (a dict update under a lock) and reported
through *observable* counters at collection, because an SDK counter's ``add()``
costs about 4 us. The duration histogram has no asynchronous form, so each call
pays one SDK ``record()`` (about 4-5 us with SDK 1.45); drop the
``dependency.call.duration`` instrument with an SDK ``View`` if that matters.
Setting the two span attributes costs about 1.5 us when a span is recording.

Use it with the SDK configured by the application::

    from seawall.integrations.otel import OtelListener

    otel = OtelListener()          # the global meter provider
    otel.track(registry)           # gauges: breaker state, bulkhead, limit, outbox
    otel.install()

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, NoOpMeter, Observation

from seawall._version import __version__
from seawall.core.breaker_state import State
from seawall.events import (
    LISTENERS,
    BulkheadRejected,
    CallCompleted,
    CallRejected,
    Event,
    FallbackFailed,
    FallbackUsed,
    LimitChanged,
    LimitRejected,
    Listeners,
    LoadShed,
    OutboxDelivered,
    OutboxDeliveryFailed,
    OutboxDropped,
    RetryGaveUp,
    RetryScheduled,
    StateChanged,
    StoreRecovered,
    StoreUnavailable,
    ThrottleRejected,
    TimedOut,
)
from seawall.integrations._tracked import DURATION_BUCKETS, Counts, Tracker

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.util.types import AttributeValue

    from seawall.core.budget import RetryBudget

__all__ = ["OtelListener"]

_STATES = tuple(s.value for s in State)
# Readings attribute -> the kinds of policy Tracker.read needs to fill it.
_KINDS = {
    "breakers": frozenset({"breaker"}),
    "bulkheads": frozenset({"bulkhead"}),
    "limits": frozenset({"limit"}),
    "throttles": frozenset({"throttle"}),
    "outboxes": frozenset({"outbox"}),
    "budgets": frozenset({"budget"}),
}
_D = ("dependency",)
# Counters (observable, over Counts): name, label names, description.
_COUNTERS = (
    ("dependency.calls", (*_D, "outcome"), "Calls through a dependency by final outcome."),
    ("circuit_breaker.open", _D, "Times the circuit opened."),
    (
        "circuit_breaker.transitions",
        (*_D, "from_state", "to_state"),
        "Circuit state changes, operator actions included.",
    ),
    ("circuit_breaker.rejected", _D, "Calls rejected by an open circuit."),
    (
        "circuit_breaker.shadow_decisions",
        (*_D, "decision"),
        "What shadow breakers would have done.",
    ),
    ("bulkhead.rejected", _D, "Calls refused by a full bulkhead."),
    ("adaptive_limit.rejected", _D, "Calls refused at once by an adaptive limit."),
    ("adaptive_limit.changes", (*_D, "direction"), "Adaptive limit moves, by direction."),
    ("throttle.rejected", _D, "Calls shed by client-side throttling."),
    ("load_shed", (*_D, "priority"), "Requests refused by load shedding, by priority."),
    ("retry.attempts", _D, "Retries scheduled (attempts after the first)."),
    ("retry.give_ups", (*_D, "reason"), "Retryable failures not retried again, by reason."),
    ("timeouts", _D, "Timeout scopes that ran out."),
    ("fallback.used", (*_D, "kind"), "Answers from a fallback, by kind."),
    ("fallback.failed", (*_D, "kind"), "Fallbacks that could not answer, by kind."),
    ("outbox.delivered", _D, "Outbox entries delivered."),
    ("outbox.delivery_failures", _D, "Failed outbox delivery attempts."),
    ("outbox.dropped", (*_D, "reason"), "Outbox entries that will not be delivered, by reason."),
    (
        "shared_store.unavailable",
        ("store", "kind"),
        "Times a shared store (Redis) stopped answering; policies went on locally.",
    ),
)
# Observable gauges: name, unit, description, Readings attribute, reading field.
_GAUGES = (
    ("circuit_breaker.failure_rate", "", "Failed share of the window.", "breakers", "failure_rate"),
    (
        "circuit_breaker.slow_call_rate",
        "",
        "Slow share of the window.",
        "breakers",
        "slow_call_rate",
    ),
    (
        "circuit_breaker.failure_rate_threshold",
        "",
        "The failure rate at which the circuit opens.",
        "breakers",
        "failure_rate_threshold",
    ),
    (
        "circuit_breaker.slow_call_rate_threshold",
        "",
        "The slow-call rate at which the circuit opens.",
        "breakers",
        "slow_call_rate_threshold",
    ),
    ("circuit_breaker.window_calls", "", "Calls in the window.", "breakers", "calls"),
    ("bulkhead.in_use", "", "Bulkhead permits held now.", "bulkheads", "in_use"),
    ("bulkhead.max_concurrent", "", "Bulkhead permits in all.", "bulkheads", "max_concurrent"),
    ("bulkhead.waiting", "", "Callers queued for a permit.", "bulkheads", "waiting"),
    ("adaptive_limit", "", "Calls an adaptive limit allows in flight now.", "limits", "limit"),
    (
        "adaptive_limit.in_flight",
        "",
        "Calls holding an adaptive limit's permit.",
        "limits",
        "in_flight",
    ),
    ("adaptive_limit.min", "", "The lowest the limit may fall to.", "limits", "min"),
    ("adaptive_limit.max", "", "The highest the limit may rise to.", "limits", "max"),
    (
        "throttle.probability",
        "",
        "The probability that a call made now is shed.",
        "throttles",
        "probability",
    ),
    (
        "throttle.window_requests",
        "",
        "Calls in the throttle's window, shed ones included.",
        "throttles",
        "requests",
    ),
    (
        "throttle.window_accepts",
        "",
        "Calls in the throttle's window the dependency accepted.",
        "throttles",
        "accepts",
    ),
    ("outbox.depth", "", "Outbox entries waiting for delivery.", "outboxes", "depth"),
    ("outbox.oldest_age", "s", "Age of the oldest pending entry.", "outboxes", "oldest_age"),
    ("outbox.dead_letters", "", "Entries in the dead-letter table.", "outboxes", "dead"),
    ("retry_budget.balance", "", "Retry tokens available.", "budgets", "balance"),
    ("retry_budget.capacity", "", "The most tokens the budget holds.", "budgets", "capacity"),
)

Attributes = dict[str, "AttributeValue"]


class OtelListener:
    """Span events and attributes on the current span, and OpenTelemetry metrics.

    Args:
        meter_provider: Where instruments are created; default the global one
            (``opentelemetry.metrics.get_meter_provider()``).
        spans: Add span events and attributes. Default true.
        metrics: Record metrics. Default true.
        buckets: Advisory bucket bounds of the call-duration histogram, in
            seconds (an SDK view may override them).

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_attrs",
        "_counts",
        "_duration",
        "_meter",
        "_metrics",
        "_spans",
        "_store_up",
        "_tracker",
    )

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        spans: bool = True,
        metrics: bool = True,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self._spans = spans
        self._metrics = metrics
        self._tracker = Tracker()
        # Learned from events only: a shared store reports when it fails and recovers.
        self._store_up: dict[tuple[str, str], int] = {}
        # Attribute dicts are built once per label set and reused on every call.
        self._attrs: dict[tuple[str, ...], Attributes] = {}
        self._meter = _meter(meter_provider, enabled=metrics)
        meter = self._meter
        try:
            self._duration = meter.create_histogram(
                "dependency.call.duration",
                unit="s",
                description="Duration of calls through a dependency, every attempt included.",
                explicit_bucket_boundaries_advisory=list(buckets),
            )
        except TypeError:  # opentelemetry-api < 1.30 has no bucket advice
            self._duration = meter.create_histogram(
                "dependency.call.duration",
                unit="s",
                description="Duration of calls through a dependency, every attempt included.",
            )
        # Counts are kept here and reported through observable counters: an SDK
        # counter's add() costs microseconds, a Counts.inc() a tenth of one.
        self._counts = {name: Counts() for name, _, _ in _COUNTERS}
        for name, labels, text in _COUNTERS:
            callback = self._counter(name, labels)
            meter.create_observable_counter(name, [callback], description=text)
        meter.create_observable_gauge(
            "dependency.info",
            [self._info],
            description="1 per tracked dependency, with its criticality.",
        )
        meter.create_observable_gauge(
            "circuit_breaker.state",
            [self._states(shadow=False)],
            description="1 for the circuit's current state, 0 for the others.",
        )
        meter.create_observable_gauge(
            "circuit_breaker.shadow_state",
            [self._states(shadow=True)],
            description="1 for the state a shadow-mode breaker would be in.",
        )
        meter.create_observable_gauge(
            "shared_store.up",
            [self._stores],
            description="1 while the shared store answers, 0 from its failure until it answers.",
        )
        for name, unit, text, kind, field in _GAUGES:
            callback = self._gauge(kind, field)
            meter.create_observable_gauge(name, [callback], unit=unit, description=text)

    # -- wiring ----------------------------------------------------------------

    def install(self, listeners: Listeners | None = None) -> Callable[[], None]:
        """Subscribe to the events of ``listeners`` (default :data:`~seawall.events.LISTENERS`).

        Returns:
            A function that unsubscribes again.
        """
        target = LISTENERS if listeners is None else listeners
        handlers: list[tuple[type[Event], Callable[[Any], None]]] = [
            (CallCompleted, self._on_completed),
            (StateChanged, self._on_state_changed),
            (CallRejected, self._on_rejected),
            (BulkheadRejected, self._on_bulkhead_rejected),
            (LimitRejected, self._on_limit_rejected),
            (LimitChanged, self._on_limit_changed),
            (ThrottleRejected, self._on_throttle_rejected),
            (LoadShed, self._on_load_shed),
            (RetryScheduled, self._on_retry_scheduled),
            (RetryGaveUp, self._on_gave_up),
            (TimedOut, self._on_timed_out),
            (FallbackUsed, self._on_fallback_used),
            (FallbackFailed, self._on_fallback_failed),
        ]
        if self._metrics:
            handlers += [
                (OutboxDelivered, self._count_outbox("outbox.delivered")),
                (OutboxDeliveryFailed, self._count_outbox("outbox.delivery_failures")),
                (OutboxDropped, self._on_dropped),
                (StoreUnavailable, self._on_store_down),
                (StoreRecovered, self._on_store_up),
            ]
        removers = [target.add(fn, event_type) for event_type, fn in handlers]

        def remove() -> None:
            for r in removers:
                r()

        return remove

    def track(self, *objects: object) -> None:
        """Observe these objects' current state at each collection (weakly referenced).

        Accepts what :meth:`seawall.integrations.prometheus.PrometheusMetrics.track`
        accepts: dependencies, breakers, bulkheads, adaptive limits (a load
        shedder's ``limit`` too), throttles, outboxes, a registry, and
        iterables of these.

        Raises:
            TypeError: An object is none of these.
        """
        self._tracker.add(*objects)

    def track_budget(self, budget: RetryBudget, name: str) -> None:
        """Observe a retry budget used outside any tracked dependency, labelled ``name``."""
        self._tracker.add_budget(budget, name)

    # -- shared helpers ----------------------------------------------------------

    def _labels(self, *pairs: str) -> Attributes:
        """Return the (cached) attributes ``{pairs[0]: pairs[1], ...}``."""
        attrs = self._attrs.get(pairs)
        if attrs is None:
            attrs = dict(zip(pairs[::2], pairs[1::2], strict=True))
            self._attrs[pairs] = attrs
        return attrs

    def _add(self, counter: str, *values: str) -> None:
        if self._metrics:
            self._counts[counter].inc(values)

    def _span_event(self, name: str, event: Event, attributes: Attributes) -> None:
        if not self._spans:
            return
        span = trace.get_current_span()
        if span.is_recording():
            attributes["seawall.dependency"] = event.name
            span.add_event(name, attributes)

    # -- event handlers ------------------------------------------------------------

    def _on_completed(self, event: CallCompleted) -> None:
        # On every call's path: two cached attribute lookups, two SDK updates.
        if self._metrics:
            self._counts["dependency.calls"].inc((event.name, event.outcome))
            self._duration.record(event.duration, self._labels("dependency", event.name))
        if self._spans:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("seawall.dependency", event.name)
                span.set_attribute("seawall.outcome", event.outcome)

    def _on_state_changed(self, event: StateChanged) -> None:
        new = str(event.new.value)
        if event.shadow:
            if event.new is State.OPEN:
                self._add("circuit_breaker.shadow_decisions", event.name, "open")
        else:
            old = str(event.old.value)
            self._add("circuit_breaker.transitions", event.name, old, new)
            if event.new is State.OPEN:
                self._add("circuit_breaker.open", event.name)
        self._span_event(
            "seawall.circuit.state_changed",
            event,
            {
                "seawall.state": new,
                "seawall.previous_state": str(event.old.value),
                "seawall.reason": event.reason,
                "seawall.failure_rate": event.failure_rate,
                "seawall.slow_call_rate": event.slow_call_rate,
                "seawall.calls": event.calls,
                "seawall.shadow": event.shadow,
            },
        )

    def _on_rejected(self, event: CallRejected) -> None:
        if event.shadow:
            self._add("circuit_breaker.shadow_decisions", event.name, "reject")
        else:
            self._add("circuit_breaker.rejected", event.name)
        attributes: Attributes = {
            "seawall.state": str(event.state.value),
            "seawall.shadow": event.shadow,
        }
        if event.retry_after is not None:
            attributes["seawall.retry_after"] = event.retry_after
        self._span_event("seawall.circuit.rejected", event, attributes)

    def _on_bulkhead_rejected(self, event: BulkheadRejected) -> None:
        self._add("bulkhead.rejected", event.name)
        self._span_event(
            "seawall.bulkhead.rejected",
            event,
            {"seawall.max_concurrent": event.max_concurrent, "seawall.waited": event.waited},
        )

    def _on_limit_rejected(self, event: LimitRejected) -> None:
        self._add("adaptive_limit.rejected", event.name)
        self._span_event("seawall.limit.rejected", event, {"seawall.limit": event.limit})

    def _on_limit_changed(self, event: LimitChanged) -> None:
        self._add("adaptive_limit.changes", event.name, "up" if event.new > event.old else "down")
        self._span_event(
            "seawall.limit.changed",
            event,
            {
                "seawall.limit": event.new,
                "seawall.previous_limit": event.old,
                "seawall.rtt": event.rtt,
                "seawall.in_flight": event.in_flight,
                "seawall.dropped": event.dropped,
            },
        )

    def _on_throttle_rejected(self, event: ThrottleRejected) -> None:
        self._add("throttle.rejected", event.name)
        self._span_event(
            "seawall.throttle.rejected",
            event,
            {
                "seawall.probability": event.probability,
                "seawall.requests": event.requests,
                "seawall.accepts": event.accepts,
            },
        )

    def _on_load_shed(self, event: LoadShed) -> None:
        self._add("load_shed", event.name, str(event.priority))
        self._span_event(
            "seawall.load_shed",
            event,
            {
                "seawall.route": event.route,
                "seawall.priority": event.priority,
                "seawall.limit": event.limit,
                "seawall.in_flight": event.in_flight,
            },
        )

    def _on_retry_scheduled(self, event: RetryScheduled) -> None:
        self._add("retry.attempts", event.name)
        attributes: Attributes = {
            "seawall.attempt": event.attempt,
            "seawall.delay": event.delay,
            "seawall.retry_after": event.retry_after,
        }
        _add_exception(attributes, event.exception)
        self._span_event("seawall.retry.scheduled", event, attributes)

    def _on_gave_up(self, event: RetryGaveUp) -> None:
        reason = event.reason.value
        self._add("retry.give_ups", event.name, reason)
        attributes: Attributes = {"seawall.reason": reason, "seawall.attempts": event.attempts}
        _add_exception(attributes, event.exception)
        self._span_event("seawall.retry.gave_up", event, attributes)

    def _on_timed_out(self, event: TimedOut) -> None:
        self._add("timeouts", event.name)
        self._span_event("seawall.timeout", event, {"seawall.timeout": event.timeout})

    def _on_fallback_used(self, event: FallbackUsed) -> None:
        self._add("fallback.used", event.name, event.kind)
        attributes: Attributes = {"seawall.fallback_kind": event.kind}
        if event.age is not None:
            attributes["seawall.age"] = event.age
        _add_exception(attributes, event.cause)
        self._span_event("seawall.fallback.used", event, attributes)

    def _on_fallback_failed(self, event: FallbackFailed) -> None:
        self._add("fallback.failed", event.name, event.kind)
        attributes: Attributes = {"seawall.fallback_kind": event.kind}
        _add_exception(attributes, event.error)
        self._span_event("seawall.fallback.failed", event, attributes)

    def _on_dropped(self, event: OutboxDropped) -> None:
        self._add("outbox.dropped", event.name, event.policy)

    def _on_store_down(self, event: StoreUnavailable) -> None:
        self._add("shared_store.unavailable", event.name, event.store)
        self._store_up[(event.name, event.store)] = 0

    def _on_store_up(self, event: StoreRecovered) -> None:
        self._store_up[(event.name, event.store)] = 1

    def _count_outbox(self, counter: str) -> Callable[[Event], None]:
        def count(event: Event) -> None:
            self._add(counter, event.name)

        return count

    # -- observable gauges ---------------------------------------------------------

    def _counter(
        self, name: str, labels: tuple[str, ...]
    ) -> Callable[[CallbackOptions], list[Observation]]:
        counts = self._counts[name]

        def observe(_: CallbackOptions) -> list[Observation]:
            return [
                Observation(
                    n, self._labels(*(x for pair in zip(labels, key, strict=True) for x in pair))
                )
                for key, n in counts.items()
            ]

        return observe

    def _stores(self, _: CallbackOptions) -> list[Observation]:
        return [
            Observation(up, self._labels("store", name, "kind", kind))
            for (name, kind), up in list(self._store_up.items())
        ]

    def _info(self, _: CallbackOptions) -> list[Observation]:
        deps = self._tracker.read(frozenset()).dependencies
        return [
            Observation(1, self._labels("dependency", d.name, "criticality", d.criticality))
            for d in deps
        ]

    def _states(self, *, shadow: bool) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(_: CallbackOptions) -> list[Observation]:
            breakers = self._tracker.read(_KINDS["breakers"]).breakers
            return [
                Observation(
                    1 if b.state == s else 0, self._labels("dependency", b.name, "state", s)
                )
                for b in breakers
                if b.shadow is shadow
                for s in _STATES
            ]

        return observe

    def _gauge(self, kind: str, field: str) -> Callable[[CallbackOptions], list[Observation]]:
        """Return a callback observing ``field`` of every tracked object of ``kind``."""
        kinds = _KINDS[kind]

        def observe(_: CallbackOptions) -> list[Observation]:
            readings = getattr(self._tracker.read(kinds), kind)
            # A value the object cannot say (a custom limit algorithm's bounds) is None.
            return [
                Observation(value, self._labels("dependency", r.name))
                for r in readings
                if (value := getattr(r, field)) is not None
            ]

        return observe

    def __repr__(self) -> str:
        return f"<OtelListener spans={self._spans} metrics={self._metrics} {self._tracker!r}>"


def _meter(provider: MeterProvider | None, *, enabled: bool) -> Meter:
    if not enabled:
        return NoOpMeter("seawall")
    if provider is None:
        return metrics.get_meter("seawall", __version__)
    return provider.get_meter("seawall", __version__)


def _add_exception(attributes: Attributes, exc: BaseException | None) -> None:
    # The semantic-convention names of an exception's type and message.
    if exc is not None:
        attributes["exception.type"] = type(exc).__qualname__
        attributes["exception.message"] = str(exc)
