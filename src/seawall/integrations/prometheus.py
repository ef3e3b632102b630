"""Prometheus metrics for every resilience decision, on ``prometheus_client``.

One call wires a service's dependencies to a registry and serves them::

    from seawall.integrations import prometheus

    metrics = prometheus.install(registry)       # a seawall Registry, or [dep, ...]
    app.mount("/metrics", metrics.asgi_app())     # Starlette / FastAPI

Counters and the call-duration histogram come from events
(:mod:`seawall.events`): :meth:`PrometheusMetrics.install` registers one small
listener per event type. Gauges (breaker state, bulkhead permits in use, an
adaptive limit's limit and calls in flight, a throttle's rejection probability,
outbox depth and oldest age, retry budget balance) are read from the tracked
objects at scrape time, through weak references (:meth:`PrometheusMetrics.track`).

Every series is labelled ``dependency`` with the name the policy carries in its
events: a dependency's own name for calls, fallbacks and timeouts, and the
breaker's, bulkhead's, adaptive limit's, throttle's, outbox's or retry
policy's name for theirs: name them after their dependency (a Dependency gives
a default-named Retry its own name). Load shedding's ``load_shed_total`` is
labelled with the shedder's name, and its gauges are those of its adaptive
limit (track ``shedder.limit``). The metric names, types and labels are
listed in :data:`METRICS`; the alert rules in ``deploy/prometheus`` and the
Grafana dashboard in ``deploy/grafana`` use them.

Cost: a call pays for one listener call when it completes, which updates its
dependency's pre-bound series under one uncontended lock: about 0.3 us
(``python -m benchmarks observability``). The series are kept here, not in
``prometheus_client`` metric objects, whose counter increment plus histogram
observation take a lock per value and cost about 0.8 us; a custom collector
exposes them. (A Dependency with any listener also builds a ``CallCompleted``
event per call, about 0.9 us: the events' price, not the exporter's.)

.. versionadded:: 0.1
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from seawall.core.breaker_state import State
from seawall.errors import ConfigError
from seawall.events import (
    LISTENERS,
    BulkheadRejected,
    CallCompleted,
    CallRejected,
    Event,
    FallbackFailed,
    FallbackUsed,
    GiveUpReason,
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
from seawall.integrations._tracked import (
    DURATION_BUCKETS,
    Counts,
    DependencyReading,
    Readings,
    Tracker,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from seawall.core.budget import RetryBudget
    from seawall.dependency import Dependency
    from seawall.integrations._tracked import DependencySource

__all__ = [
    "DEFAULT_BUCKETS",
    "METRICS",
    "OUTCOMES",
    "MetricSpec",
    "PrometheusMetrics",
    "install",
]

#: Upper bounds of the call-duration histogram, in seconds (``+Inf`` is added).
DEFAULT_BUCKETS: Final = DURATION_BUCKETS

#: The ``outcome`` label values of ``dependency_calls_total`` (see CallCompleted).
OUTCOMES: Final = ("success", "failure", "rejected", "timeout", "fallback")

# OutboxDropped.policy values, pre-created so that the first drop shows in increase().
_DROP_REASONS = (
    "reject_new",
    "drop_oldest",
    "max_attempts",
    "undecodable",
    "storage_error",
    "closed",
)
_STATES = tuple(s.value for s in State)
# The direction label values of adaptive_limit_changes_total.
_DIRECTIONS = ("up", "down")
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: its name (before any namespace), type, labels and meaning."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


_D = ("dependency",)

#: Every metric :class:`PrometheusMetrics` exports, in exposition order.
METRICS: Final = (
    # -- from events (counters and the histogram) -------------------------------
    MetricSpec(
        "dependency_calls_total",
        "counter",
        (*_D, "outcome"),
        "Calls through a dependency by final outcome: success, failure, rejected, timeout, "
        "fallback.",
    ),
    MetricSpec(
        "dependency_call_duration_seconds",
        "histogram",
        _D,
        "Duration of calls through a dependency, every attempt and wait included.",
    ),
    MetricSpec(
        "circuit_breaker_open_total",
        "counter",
        _D,
        "Times the circuit opened (CLOSED or HALF_OPEN to OPEN).",
    ),
    MetricSpec(
        "circuit_breaker_transitions_total",
        "counter",
        (*_D, "from_state", "to_state"),
        "Circuit state changes, operator actions included.",
    ),
    MetricSpec(
        "circuit_breaker_rejected_total",
        "counter",
        _D,
        "Calls rejected by an open (or full half-open) circuit.",
    ),
    MetricSpec(
        "circuit_breaker_shadow_decisions_total",
        "counter",
        (*_D, "decision"),
        "What shadow-mode breakers would have done: open, reject.",
    ),
    MetricSpec(
        "bulkhead_rejected_total",
        "counter",
        _D,
        "Calls refused because no bulkhead permit came free within max_wait.",
    ),
    MetricSpec(
        "adaptive_limit_rejected_total",
        "counter",
        _D,
        "Calls refused at once because an adaptive limit's worth of calls was in flight.",
    ),
    MetricSpec(
        "adaptive_limit_changes_total",
        "counter",
        (*_D, "direction"),
        "Times an adaptive limit moved, by direction: up, down.",
    ),
    MetricSpec(
        "throttle_rejected_total",
        "counter",
        _D,
        "Calls shed by client-side adaptive throttling before reaching the dependency.",
    ),
    MetricSpec(
        "load_shed_total",
        "counter",
        (*_D, "priority"),
        "Requests refused by the service's own load shedding, by priority (0 is the most "
        "important); dependency is the shedder's name.",
    ),
    MetricSpec(
        "retry_attempts_total",
        "counter",
        _D,
        "Retries scheduled (attempts after the first).",
    ),
    MetricSpec(
        "retry_give_ups_total",
        "counter",
        (*_D, "reason"),
        "Retryable failures not retried again, by reason: exhausted, budget, deadline, "
        "max_elapsed.",
    ),
    MetricSpec("timeouts_total", "counter", _D, "Timeout scopes that ran out."),
    MetricSpec(
        "fallback_used_total",
        "counter",
        (*_D, "kind"),
        "Answers from a fallback instead of the dependency, by kind: value, call, stale.",
    ),
    MetricSpec(
        "fallback_failed_total",
        "counter",
        (*_D, "kind"),
        "Fallbacks that could not answer (raised, or no fresh-enough stale value).",
    ),
    MetricSpec("outbox_delivered_total", "counter", _D, "Outbox entries delivered downstream."),
    MetricSpec(
        "shared_store_unavailable_total",
        "counter",
        ("store", "kind"),
        "Times a store shared by replicas (Redis) stopped answering; policies went on "
        "with local state. kind: breakers, stale ...",
    ),
    MetricSpec(
        "shared_store_up",
        "gauge",
        ("store", "kind"),
        "1 while the shared store answers, 0 from its failure until it answers again.",
    ),
    MetricSpec(
        "outbox_delivery_failures_total",
        "counter",
        _D,
        "Failed outbox delivery attempts (the entry is tried again).",
    ),
    MetricSpec(
        "outbox_dropped_total",
        "counter",
        (*_D, "reason"),
        "Outbox entries that will not be delivered, by reason (reject_new, drop_oldest, "
        "max_attempts, undecodable, storage_error, closed).",
    ),
    # -- read from tracked objects at scrape time (gauges) ---------------------
    MetricSpec(
        "dependency_info",
        "gauge",
        (*_D, "criticality"),
        "Always 1: a tracked dependency and its criticality, for joins in alerts.",
    ),
    MetricSpec(
        "circuit_breaker_state",
        "gauge",
        (*_D, "state"),
        "1 for the circuit's current state, 0 for the others (shadow breakers excluded).",
    ),
    MetricSpec(
        "circuit_breaker_shadow_state",
        "gauge",
        (*_D, "state"),
        "1 for the state a shadow-mode breaker would be in, 0 for the others.",
    ),
    MetricSpec(
        "circuit_breaker_failure_rate",
        "gauge",
        _D,
        "Share of failed calls in the breaker's window, 0 to 1.",
    ),
    MetricSpec(
        "circuit_breaker_slow_call_rate",
        "gauge",
        _D,
        "Share of slow calls in the breaker's window, 0 to 1.",
    ),
    MetricSpec(
        "circuit_breaker_failure_rate_threshold",
        "gauge",
        _D,
        "The failure rate at which the circuit opens.",
    ),
    MetricSpec(
        "circuit_breaker_slow_call_rate_threshold",
        "gauge",
        _D,
        "The slow-call rate at which the circuit opens (1 means never).",
    ),
    MetricSpec("circuit_breaker_window_calls", "gauge", _D, "Calls in the breaker's window."),
    MetricSpec("bulkhead_in_use", "gauge", _D, "Bulkhead permits held now."),
    MetricSpec("bulkhead_max_concurrent", "gauge", _D, "Bulkhead permits in all."),
    MetricSpec("bulkhead_waiting", "gauge", _D, "Callers queued for a bulkhead permit."),
    MetricSpec("adaptive_limit", "gauge", _D, "The adaptive limit now: calls allowed in flight."),
    MetricSpec(
        "adaptive_limit_in_flight", "gauge", _D, "Calls holding an adaptive limit's permit."
    ),
    MetricSpec("adaptive_limit_min", "gauge", _D, "The lowest the adaptive limit may fall to."),
    MetricSpec("adaptive_limit_max", "gauge", _D, "The highest the adaptive limit may rise to."),
    MetricSpec(
        "throttle_probability",
        "gauge",
        _D,
        "The probability that client-side throttling sheds a call made now, 0 to 1.",
    ),
    MetricSpec(
        "throttle_window_requests",
        "gauge",
        _D,
        "Calls in the throttle's trailing window, those it shed included.",
    ),
    MetricSpec(
        "throttle_window_accepts",
        "gauge",
        _D,
        "Calls in the throttle's trailing window that the dependency accepted.",
    ),
    MetricSpec("outbox_depth", "gauge", _D, "Outbox entries waiting for delivery."),
    MetricSpec(
        "outbox_oldest_age_seconds",
        "gauge",
        _D,
        "Age of the oldest undelivered outbox entry (0 when empty).",
    ),
    MetricSpec("outbox_dead_letters", "gauge", _D, "Entries in the outbox's dead-letter table."),
    MetricSpec(
        "retry_budget_balance",
        "gauge",
        _D,
        "Retry tokens available to the dependency's retries (one per retry).",
    ),
    MetricSpec("retry_budget_capacity", "gauge", _D, "The most tokens the retry budget holds."),
)


class _Calls:
    """One dependency's outcome counts and duration histogram, under one lock."""

    __slots__ = ("buckets", "counts", "lock", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * n_buckets  # per bound, then +Inf; not cumulative
        self.sum = 0.0


class PrometheusMetrics:
    """A Prometheus collector of seawall's events and of tracked policies' state.

    Building one registers it with ``registry``; :meth:`install` subscribes it
    to events; :meth:`track` adds objects whose current state is read at each
    scrape. :func:`install` does all three in one call.

    Args:
        registry: The ``prometheus_client`` registry to register with; default
            the global ``prometheus_client.REGISTRY``.
        namespace: A prefix for every metric name (``"shop"`` gives
            ``shop_circuit_breaker_open_total``). Default none: the names of
            :data:`METRICS`, which the shipped alerts and dashboard use.
        buckets: Upper bounds of the call-duration histogram in seconds,
            increasing; ``+Inf`` is added. Default :data:`DEFAULT_BUCKETS`.

    Raises:
        ConfigError: ``buckets`` is empty, unsorted or not positive.
        ValueError: The registry already has metrics of these names (a second
            exporter on one registry: give it another ``namespace``).

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_bounds",
        "_calls",
        "_calls_lock",
        "_counters",
        "_le",
        "_names",
        "_registry",
        "_removers",
        "_store_up",
        "_tracker",
    )

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self._bounds = _check_buckets(buckets)
        self._le = [*(repr(b) for b in self._bounds), "+Inf"]
        prefix = f"{namespace}_" if namespace else ""
        self._names = {spec.name: prefix + spec.name for spec in METRICS}
        self._counters = {
            spec.name: Counts()
            for spec in METRICS
            if spec.type == "counter" and spec.name != "dependency_calls_total"
        }
        self._calls: dict[str, _Calls] = {}
        self._calls_lock = threading.Lock()
        self._tracker = Tracker()
        self._removers: list[Callable[[], None]] = []
        # Learned from events only: a store reports itself when it fails and recovers.
        self._store_up: dict[tuple[str, str], int] = {}
        self._registry = REGISTRY if registry is None else registry
        self._registry.register(self)

    @property
    def registry(self) -> CollectorRegistry:
        """The ``prometheus_client`` registry this collector is registered with."""
        return self._registry

    # -- wiring ----------------------------------------------------------------

    def install(self, listeners: Listeners | None = None) -> Callable[[], None]:
        """Subscribe to the events of ``listeners`` (default :data:`~seawall.events.LISTENERS`).

        Returns:
            A function that unsubscribes again.
        """
        target = LISTENERS if listeners is None else listeners
        removers = [target.add(fn, event_type) for event_type, fn in self._handlers()]

        def remove() -> None:
            for r in removers:
                r()

        self._removers.append(remove)
        return remove

    def track(self, *objects: object) -> None:
        """Read these objects' current state at every scrape, without keeping them alive.

        Accepts :class:`~seawall.Dependency` (its breaker, bulkhead or
        adaptive limit, throttle, outbox and retry budget come with it),
        :class:`~seawall.CircuitBreaker`, :class:`~seawall.Bulkhead`,
        :class:`~seawall.ThreadBulkhead`, :class:`~seawall.adaptive.AdaptiveLimit`
        (a load shedder's ``limit`` too), :class:`~seawall.throttle.Throttle`,
        :class:`~seawall.Outbox`, a registry (anything with a ``dependencies``
        mapping, read afresh at each scrape), and iterables of these.

        Raises:
            TypeError: An object is none of these.
        """
        self._tracker.add(*objects)

    def track_budget(self, budget: RetryBudget, name: str) -> None:
        """Export a retry budget used outside any tracked dependency, labelled ``name``."""
        self._tracker.add_budget(budget, name)

    def asgi_app(self) -> Callable[..., Any]:
        """Return an ASGI app serving this registry's metrics (mount it at ``/metrics``)."""
        return make_asgi_app(self._registry)

    def close(self) -> None:
        """Unsubscribe from every event source and unregister from the registry."""
        removers, self._removers = self._removers, []
        for remove in removers:
            remove()
        try:
            self._registry.unregister(self)
        except KeyError:  # already unregistered
            return

    # -- event handlers: one per type, so dispatch needs no isinstance chain ---

    def _handlers(self) -> list[tuple[type[Event], Callable[[Any], None]]]:
        return [
            (CallCompleted, self._on_completed),
            (StateChanged, self._on_state_changed),
            (CallRejected, self._on_rejected),
            (BulkheadRejected, self._count("bulkhead_rejected_total")),
            (LimitRejected, self._count("adaptive_limit_rejected_total")),
            (LimitChanged, self._count_direction("adaptive_limit_changes_total")),
            (ThrottleRejected, self._count("throttle_rejected_total")),
            (LoadShed, self._count_priority("load_shed_total")),
            (RetryScheduled, self._count("retry_attempts_total")),
            (RetryGaveUp, self._on_gave_up),
            (TimedOut, self._count("timeouts_total")),
            (FallbackUsed, self._count_kind("fallback_used_total")),
            (FallbackFailed, self._count_kind("fallback_failed_total")),
            (OutboxDelivered, self._count("outbox_delivered_total")),
            (OutboxDeliveryFailed, self._count("outbox_delivery_failures_total")),
            (OutboxDropped, self._on_dropped),
            (StoreUnavailable, self._on_store_down),
            (StoreRecovered, self._on_store_up),
        ]

    def _on_completed(self, event: CallCompleted) -> None:
        # The one handler on every call's path: a dict lookup, a bisect, and
        # three updates under the dependency's own lock.
        series = self._calls.get(event.name) or self._series(event.name)
        duration = event.duration
        i = bisect_left(self._bounds, duration)
        with series.lock:
            series.buckets[i] += 1
            series.sum += duration
            counts = series.counts
            counts[event.outcome] = counts.get(event.outcome, 0) + 1

    def _series(self, name: str) -> _Calls:
        with self._calls_lock:
            series = self._calls.get(name)
            if series is None:
                series = self._calls[name] = _Calls(len(self._bounds) + 1)
            return series

    def _on_state_changed(self, event: StateChanged) -> None:
        new = event.new
        if event.shadow:
            if new is State.OPEN:
                self._counters["circuit_breaker_shadow_decisions_total"].inc((event.name, "open"))
            return
        self._counters["circuit_breaker_transitions_total"].inc(
            (event.name, str(event.old.value), str(new.value))
        )
        if new is State.OPEN:
            self._counters["circuit_breaker_open_total"].inc((event.name,))

    def _on_rejected(self, event: CallRejected) -> None:
        if event.shadow:
            self._counters["circuit_breaker_shadow_decisions_total"].inc((event.name, "reject"))
        else:
            self._counters["circuit_breaker_rejected_total"].inc((event.name,))

    def _on_gave_up(self, event: RetryGaveUp) -> None:
        self._counters["retry_give_ups_total"].inc((event.name, event.reason.value))

    def _on_store_down(self, event: StoreUnavailable) -> None:
        self._counters["shared_store_unavailable_total"].inc((event.name, event.store))
        self._store_up[(event.name, event.store)] = 0

    def _on_store_up(self, event: StoreRecovered) -> None:
        self._store_up[(event.name, event.store)] = 1

    def _on_dropped(self, event: OutboxDropped) -> None:
        self._counters["outbox_dropped_total"].inc((event.name, event.policy))

    def _count(self, metric: str) -> Callable[[Event], None]:
        inc = self._counters[metric].inc

        def count(event: Event) -> None:
            inc((event.name,))

        return count

    def _count_kind(self, metric: str) -> Callable[[FallbackUsed | FallbackFailed], None]:
        inc = self._counters[metric].inc

        def count(event: FallbackUsed | FallbackFailed) -> None:
            inc((event.name, event.kind))

        return count

    def _count_direction(self, metric: str) -> Callable[[LimitChanged], None]:
        inc = self._counters[metric].inc
        up, down = _DIRECTIONS

        def count(event: LimitChanged) -> None:
            inc((event.name, up if event.new > event.old else down))

        return count

    def _count_priority(self, metric: str) -> Callable[[LoadShed], None]:
        inc = self._counters[metric].inc

        def count(event: LoadShed) -> None:
            inc((event.name, str(event.priority)))

        return count

    # -- the collector protocol ------------------------------------------------

    def describe(self) -> list[Metric]:
        """Return the metric families without samples (for the registry's duplicate check)."""
        return [self._family(spec) for spec in METRICS]

    def collect(self) -> Iterator[Metric]:
        """Return every metric family with its current samples (called at scrape time)."""
        readings = self._tracker.read() if self._tracker else Readings()
        self._touch(readings)
        families = {spec.name: self._family(spec) for spec in METRICS}
        self._add_events(families)
        _add_readings(families, readings)
        return iter(families.values())

    def _family(self, spec: MetricSpec) -> Metric:
        name = self._names[spec.name]
        if spec.type == "counter":
            return CounterMetricFamily(name, spec.help, labels=spec.labels)
        if spec.type == "histogram":
            return HistogramMetricFamily(name, spec.help, labels=spec.labels)
        return GaugeMetricFamily(name, spec.help, labels=spec.labels)

    def _add_events(self, families: dict[str, Metric]) -> None:
        calls = families["dependency_calls_total"]
        durations = families["dependency_call_duration_seconds"]
        for name, series in list(self._calls.items()):
            with series.lock:
                counts = list(series.counts.items())
                buckets = list(series.buckets)
                total = series.sum
            for outcome, n in counts:
                calls.add_metric([name, outcome], n)  # type: ignore[attr-defined]
            cumulative = []
            running = 0
            for le, n in zip(self._le, buckets, strict=True):
                running += n
                cumulative.append((le, running))
            durations.add_metric([name], cumulative, total)  # type: ignore[attr-defined]
        for metric, counter in self._counters.items():
            family = families[metric]
            for key, n in counter.items():
                family.add_metric(list(key), n)  # type: ignore[attr-defined]
        up = families["shared_store_up"]
        for key, value in list(self._store_up.items()):
            up.add_metric(list(key), value)  # type: ignore[attr-defined]

    def _touch(self, readings: Readings) -> None:
        """Create zero series for what is tracked, so alerts see the first event."""
        for dep in readings.dependencies:
            if dep.name not in self._calls:
                self._series(dep.name)
        counters = self._counters
        for metric, key in _zero_series(readings):
            counters[metric].touch(key)

    def __repr__(self) -> str:
        return f"<PrometheusMetrics {len(self._calls)} dependencies, {self._tracker!r}>"


def _zero_series(r: Readings) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield the counter series that tracked objects can increment."""
    for dep in r.dependencies:
        yield from _dependency_series(dep)
    for breaker in (b for b in r.breakers if not b.shadow):
        yield "circuit_breaker_open_total", (breaker.name,)
        yield "circuit_breaker_rejected_total", (breaker.name,)
    for bulkhead in r.bulkheads:
        yield "bulkhead_rejected_total", (bulkhead.name,)
    for limit in r.limits:
        yield from _limit_series(limit.name)
    for throttle in r.throttles:
        yield "throttle_rejected_total", (throttle.name,)
    for outbox in r.outboxes:
        yield "outbox_delivered_total", (outbox.name,)
        yield "outbox_delivery_failures_total", (outbox.name,)
        for policy in _DROP_REASONS:
            yield "outbox_dropped_total", (outbox.name, policy)


def _dependency_series(dep: DependencyReading) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield the counter series of a dependency's own events and of its named policies."""
    if dep.retry is not None:
        yield "retry_attempts_total", (dep.retry,)
        for reason in GiveUpReason:
            yield "retry_give_ups_total", (dep.retry, reason.value)
    if dep.fallback_kind is not None:
        yield "fallback_used_total", (dep.name, dep.fallback_kind)
        yield "fallback_failed_total", (dep.name, dep.fallback_kind)
    if dep.timeout:
        yield "timeouts_total", (dep.name,)
    # Named here too, so a limit or throttle whose reading fails still has them.
    if dep.limit is not None:
        yield from _limit_series(dep.limit)
    if dep.throttle is not None:
        yield "throttle_rejected_total", (dep.throttle,)


def _limit_series(name: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    yield "adaptive_limit_rejected_total", (name,)
    for direction in _DIRECTIONS:
        yield "adaptive_limit_changes_total", (name, direction)


def _add_readings(families: dict[str, Metric], r: Readings) -> None:
    def gauge(metric: str, labels: list[str], value: float) -> None:
        families[metric].add_metric(labels, value)  # type: ignore[attr-defined]

    for dep in r.dependencies:
        gauge("dependency_info", [dep.name, dep.criticality], 1)
    for b in r.breakers:
        state_metric = "circuit_breaker_shadow_state" if b.shadow else "circuit_breaker_state"
        for state in _STATES:
            gauge(state_metric, [b.name, state], 1 if state == b.state else 0)
        gauge("circuit_breaker_failure_rate", [b.name], b.failure_rate)
        gauge("circuit_breaker_slow_call_rate", [b.name], b.slow_call_rate)
        gauge("circuit_breaker_failure_rate_threshold", [b.name], b.failure_rate_threshold)
        gauge("circuit_breaker_slow_call_rate_threshold", [b.name], b.slow_call_rate_threshold)
        gauge("circuit_breaker_window_calls", [b.name], b.calls)
    for h in r.bulkheads:
        gauge("bulkhead_in_use", [h.name], h.in_use)
        gauge("bulkhead_max_concurrent", [h.name], h.max_concurrent)
        gauge("bulkhead_waiting", [h.name], h.waiting)
    _add_adaptive(gauge, r)
    for o in r.outboxes:
        gauge("outbox_depth", [o.name], o.depth)
        gauge("outbox_oldest_age_seconds", [o.name], o.oldest_age)
        gauge("outbox_dead_letters", [o.name], o.dead)
    for t in r.budgets:
        gauge("retry_budget_balance", [t.name], t.balance)
        gauge("retry_budget_capacity", [t.name], t.capacity)


def _add_adaptive(gauge: Callable[[str, list[str], float], None], r: Readings) -> None:
    for a in r.limits:
        gauge("adaptive_limit", [a.name], a.limit)
        gauge("adaptive_limit_in_flight", [a.name], a.in_flight)
        if a.min is not None:
            gauge("adaptive_limit_min", [a.name], a.min)
        if a.max is not None:
            gauge("adaptive_limit_max", [a.name], a.max)
    for p in r.throttles:
        gauge("throttle_probability", [p.name], p.probability)
        gauge("throttle_window_requests", [p.name], p.requests)
        gauge("throttle_window_accepts", [p.name], p.accepts)


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in buckets if b != _INF)
    if (
        not bounds
        or any(b <= 0 or b != b for b in bounds)  # noqa: PLR0124 - b != b is NaN
        or list(bounds) != sorted(set(bounds))
    ):
        msg = f"buckets must be increasing positive numbers of seconds, got {buckets!r}"
        raise ConfigError(msg)
    return bounds


def install(
    dependencies: DependencySource | Iterable[Dependency] | None = None,
    *,
    registry: CollectorRegistry | None = None,
    listeners: Listeners | None = None,
    namespace: str = "",
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> PrometheusMetrics:
    """Export seawall's metrics to Prometheus in one call.

    Builds a :class:`PrometheusMetrics` on ``registry``, subscribes it to
    ``listeners`` and tracks ``dependencies``; serve it with
    :meth:`~PrometheusMetrics.asgi_app` (or ``prometheus_client``'s own servers).

    Args:
        dependencies: A seawall ``Registry`` (anything with a ``dependencies``
            mapping; dependencies added to it later are picked up at the next
            scrape), an iterable of :class:`~seawall.Dependency`, or ``None``.
        registry: The ``prometheus_client`` registry; default the global one.
        listeners: The event source; default :data:`~seawall.events.LISTENERS`.
        namespace: A prefix for every metric name; default none.
        buckets: The call-duration histogram's bounds in seconds.

    Returns:
        The exporter; :meth:`~PrometheusMetrics.close` undoes the installation.
    """
    metrics = PrometheusMetrics(registry, namespace=namespace, buckets=buckets)
    try:
        if dependencies is not None:
            metrics.track(dependencies)
        metrics.install(listeners)
    except BaseException:
        metrics.close()
        raise
    return metrics
