"""The OpenTelemetry listener: real policies decide; the SDK's in-memory exporters see it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from seawall import Backoff, Criticality, Dependency, Fallback, Listeners, Retry, ThreadBulkhead
from seawall.adaptive import AdaptiveLimit
from seawall.events import CallCompleted, StoreRecovered, StoreUnavailable
from seawall.integrations._tracked import DURATION_BUCKETS
from seawall.integrations.otel import OtelListener
from seawall.integrations.prometheus import METRICS
from seawall.testing import FakeClock
from tests.integrations import adaptive, scenario
from tests.integrations.scenario import Down, Service, call, fail, ok


class Otel:
    """An SDK tracer and meter provider with in-memory exporters, and the listener on them."""

    def __init__(self, listeners: Listeners, **kw: Any) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = self.tracer_provider.get_tracer("tests")
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.listener = OtelListener(self.meter_provider, **kw)
        self.remove = self.listener.install(listeners)

    def span(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.spans.get_finished_spans() if s.name == name]
        return span

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """{instrument name: [(attributes, value or histogram point)]}."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = [
                        (
                            dict(p.attributes or {}),
                            p if isinstance(p, HistogramDataPoint) else p.value,  # type: ignore[union-attr],
                        )
                        for p in metric.data.data_points
                    ]
        return out

    def close(self) -> None:
        self.remove()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


def point(points: list[tuple[dict[str, Any], Any]], **attrs: str) -> Any:
    found = [v for a, v in points if a == attrs]
    assert len(found) == 1, (attrs, points)
    return found[0]


@pytest.fixture
def service(tmp_path: Path) -> Any:
    svc = scenario.build(tmp_path)
    yield svc
    svc.close()


@pytest.fixture
def otel(service: Service) -> Any:
    o = Otel(service.listeners)
    o.listener.track(service)
    yield o
    o.close()


# -- span events and attributes -------------------------------------------------------------


def test_retries_and_give_up_are_span_events(service: Service, otel: Otel) -> None:
    """A failing call's span carries one event per retry, one for the give-up, and its outcome."""
    with otel.tracer.start_as_current_span("charge"):
        call(service.payment)
    span = otel.span("charge")
    got = events(span)
    assert [name for name, _ in got] == ["seawall.retry.scheduled", "seawall.retry.gave_up"]
    scheduled, gave_up = (attrs for _, attrs in got)
    assert scheduled == {
        "seawall.dependency": "payment",
        "seawall.attempt": 1,
        "seawall.delay": 0.1,
        "seawall.retry_after": False,
        "exception.type": "Down",
        "exception.message": "connection refused",
    }
    assert gave_up["seawall.reason"] == "exhausted"
    assert gave_up["seawall.attempts"] == 2
    assert span.attributes is not None
    assert span.attributes["seawall.dependency"] == "payment"
    assert span.attributes["seawall.outcome"] == "failure"


def test_opening_and_rejections_are_span_events(service: Service, otel: Otel) -> None:
    """The call that trips the breaker records the change; later calls their rejection."""
    with otel.tracer.start_as_current_span("tripping"):
        scenario.open_circuit(service.payment)
    with otel.tracer.start_as_current_span("rejected"):
        call(service.payment, ok)
    changed = [a for n, a in events(otel.span("tripping")) if n == "seawall.circuit.state_changed"]
    assert changed == [
        {
            "seawall.dependency": "payment",
            "seawall.state": "open",
            "seawall.previous_state": "closed",
            "seawall.reason": "failure rate",
            "seawall.failure_rate": 1.0,
            "seawall.slow_call_rate": 0.0,
            "seawall.calls": 4,
            "seawall.shadow": False,
        }
    ]
    rejected = otel.span("rejected")
    assert events(rejected) == [
        (
            "seawall.circuit.rejected",
            {
                "seawall.dependency": "payment",
                "seawall.state": "open",
                "seawall.shadow": False,
                "seawall.retry_after": 30.0,
            },
        )
    ]
    assert rejected.attributes is not None
    assert rejected.attributes["seawall.outcome"] == "rejected"


def test_bulkhead_rejection_is_a_span_event(service: Service, otel: Otel) -> None:
    """A call refused by a full bulkhead records it on the caller's span."""
    with otel.tracer.start_as_current_span("crowded"):
        scenario.saturate_bulkhead(service.payment)
    (name, attrs), *_ = events(otel.span("crowded"))
    assert name == "seawall.bulkhead.rejected"
    assert attrs == {
        "seawall.dependency": "payment",
        "seawall.max_concurrent": 1,
        "seawall.waited": 0.0,
    }


def test_fallback_and_timeout_are_span_events(service: Service, otel: Otel) -> None:
    """A fallback answer and an async timeout each leave an event on the current span."""
    with otel.tracer.start_as_current_span("recommend"):
        call(service.recommendations)
    with otel.tracer.start_as_current_span("search"):
        scenario.time_out(service.listeners)
    (name, attrs), *_ = events(otel.span("recommend"))
    assert name == "seawall.fallback.used"
    assert attrs["seawall.fallback_kind"] == "value"
    assert attrs["exception.type"] == "Down"
    recommend = otel.span("recommend")
    assert recommend.attributes is not None
    assert recommend.attributes["seawall.outcome"] == "fallback"
    assert events(otel.span("search")) == [
        ("seawall.timeout", {"seawall.dependency": "search", "seawall.timeout": 0.01})
    ]


def test_fallback_failure_is_a_span_event(clock: FakeClock) -> None:
    """A fallback that cannot answer records why, with the fallback's own error."""
    listeners = Listeners()
    o = Otel(listeners)
    dep = Dependency(
        "profile",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.stale(60),
        clock=clock,
        listeners=listeners,
    )
    with o.tracer.start_as_current_span("profile"):
        call(dep)
    names = [n for n, _ in events(o.span("profile"))]
    assert names == ["seawall.fallback.failed"]
    assert events(o.span("profile"))[0][1]["exception.type"] == "LookupError"
    o.close()


def test_no_recording_span_no_work(service: Service, otel: Otel) -> None:
    """Without a current span, calls go through and nothing is recorded or raised."""
    scenario.open_circuit(service.payment)
    call(service.payment)
    assert otel.spans.get_finished_spans() == ()


def test_spans_off_metrics_off(service: Service) -> None:
    """spans=False adds no span event; metrics=False records no instrument."""
    o = Otel(service.listeners, spans=False, metrics=False)
    o.listener.track(service)
    with o.tracer.start_as_current_span("quiet"):
        scenario.open_circuit(service.payment)
    assert events(o.span("quiet")) == []
    assert o.reader.get_metrics_data() is None or o.metrics() == {}
    o.close()


# -- metrics ------------------------------------------------------------------------------


def test_metrics_from_events(service: Service, otel: Otel) -> None:
    """Counters and the duration histogram mirror the Prometheus exporter's."""
    scenario.drive_everything(service)
    m = otel.metrics()
    calls = m["dependency.calls"]
    assert point(calls, dependency="payment", outcome="success") == 3
    # The fourth failure (a retry's first attempt) opens the circuit, which then
    # rejects that retry: the call's outcome is "rejected".
    assert point(calls, dependency="payment", outcome="failure") == 1
    assert point(calls, dependency="payment", outcome="rejected") == 3  # + circuit, bulkhead
    assert point(calls, dependency="recommendations", outcome="fallback") == 5
    assert point(calls, dependency="search", outcome="timeout") == 1
    duration = point(m["dependency.call.duration"], dependency="payment")
    assert duration.count == 7
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert point(m["circuit_breaker.open"], dependency="payment") == 1
    assert point(m["circuit_breaker.open"], dependency="recommendations") == 1
    closed = {"dependency": "payment", "from_state": "half_open", "to_state": "closed"}
    assert point(m["circuit_breaker.transitions"], **closed) == 1
    assert point(m["circuit_breaker.rejected"], dependency="payment") == 2
    assert point(m["bulkhead.rejected"], dependency="payment") == 1
    assert point(m["retry.attempts"], dependency="payment") == 2
    assert point(m["retry.give_ups"], dependency="payment", reason="exhausted") == 1
    assert point(m["timeouts"], dependency="search") == 1
    assert point(m["fallback.used"], dependency="recommendations", kind="value") == 5
    assert point(m["outbox.delivered"], dependency="notifications") == 1
    assert point(m["outbox.delivery_failures"], dependency="notifications") == 1
    assert point(m["outbox.dropped"], dependency="notifications", reason="reject_new") == 1
    assert point(m["outbox.dropped"], dependency="notifications", reason="max_attempts") == 1


def test_observable_gauges_read_live_state(service: Service, otel: Otel) -> None:
    """Breaker state, permits, outbox backlog and budget are observed at collection."""
    scenario.open_circuit(service.payment)
    service.notifications.send("mail", {"bad": True})
    service.clock.advance(5)
    bulkhead = service.payment.bulkhead
    assert isinstance(bulkhead, ThreadBulkhead)
    bulkhead.acquire()
    try:
        m = otel.metrics()
    finally:
        bulkhead.release()
    assert point(m["circuit_breaker.state"], dependency="payment", state="open") == 1
    assert point(m["circuit_breaker.state"], dependency="payment", state="closed") == 0
    assert point(m["circuit_breaker.failure_rate"], dependency="payment") == 1.0
    assert point(m["bulkhead.in_use"], dependency="payment") == 1
    assert point(m["bulkhead.max_concurrent"], dependency="payment") == 1
    assert point(m["outbox.depth"], dependency="notifications") == 1
    assert point(m["outbox.oldest_age"], dependency="notifications") == pytest.approx(5)
    assert point(m["retry_budget.balance"], dependency="payment") == 98
    assert point(m["dependency.info"], dependency="payment", criticality="critical") == 1
    assert "circuit_breaker.shadow_state" not in m or m["circuit_breaker.shadow_state"] == []


def test_names_translate_to_the_prometheus_exporter_names(service: Service, otel: Otel) -> None:
    """Through OTel's Prometheus translation, the instruments are exactly METRICS."""
    shadow = scenario.breaker("beta", service.clock, service.listeners, shadow=True)
    limit = adaptive.limit("search", service.clock, service.listeners)
    throttle = adaptive.throttle("search", service.clock, service.listeners)
    otel.listener.track(shadow, limit, throttle)
    scenario.drive_everything(service)
    adaptive.drive(limit, throttle, service.listeners, service.clock)
    data = otel.reader.get_metrics_data()
    assert data is not None
    translated = set()
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        name = metric.name.replace(".", "_")
        if metric.unit == "s":
            name += "_seconds"
        if isinstance(metric.data, Sum) and metric.data.is_monotonic:
            name += "_total"
        translated.add(name)
    # Only a shadow decision, a failed fallback and a shared store's outage
    # (tested below) never happened here.
    never = {
        "circuit_breaker_shadow_decisions_total",
        "fallback_failed_total",
        "shared_store_unavailable_total",
        "shared_store_up",
    }
    assert translated | never == {s.name for s in METRICS}


# -- adaptive limits, throttles, load shedding -------------------------------------------


def test_adaptive_decisions_are_span_events(clock: FakeClock) -> None:
    """A limit's move and refusal, a throttle's shed, a load shed: each on the current span."""
    listeners = Listeners()
    o = Otel(listeners)
    limit = adaptive.limit("search", clock, listeners)
    throttle = adaptive.throttle("pricing", clock, listeners)
    with o.tracer.start_as_current_span("raised"):
        adaptive.raise_limit(limit, clock)
    with o.tracer.start_as_current_span("cut"):
        adaptive.cut_limit(limit, clock)
    with o.tracer.start_as_current_span("refused"):
        adaptive.refuse(limit)
    with o.tracer.start_as_current_span("shed"):
        adaptive.shed(throttle)
    with o.tracer.start_as_current_span("request"):
        adaptive.load_shed(listeners, clock)
    o.close()
    assert events(o.span("raised")) == [
        (
            "seawall.limit.changed",
            {
                "seawall.dependency": "search",
                "seawall.limit": 3,
                "seawall.previous_limit": 2,
                "seawall.rtt": adaptive.RTT,
                "seawall.in_flight": 1,
                "seawall.dropped": False,
            },
        )
    ]
    (name, cut), *_ = events(o.span("cut"))
    assert name == "seawall.limit.changed"
    assert (cut["seawall.previous_limit"], cut["seawall.limit"], cut["seawall.dropped"]) == (
        3,
        1,
        True,
    )
    assert events(o.span("refused")) == [
        ("seawall.limit.rejected", {"seawall.dependency": "search", "seawall.limit": 1})
    ]
    assert events(o.span("shed")) == [
        (
            "seawall.throttle.rejected",
            {
                "seawall.dependency": "pricing",
                "seawall.probability": 0.5,
                "seawall.requests": 2,
                "seawall.accepts": 0,
            },
        )
    ]
    assert events(o.span("request")) == [
        (
            "seawall.load_shed",
            {
                "seawall.dependency": "api",
                "seawall.route": "/search",
                "seawall.priority": 2,
                "seawall.limit": 4,
                "seawall.in_flight": 4,
            },
        )
    ]


def test_adaptive_metrics(clock: FakeClock) -> None:
    """Counters from the events, gauges read from the tracked limit and throttle."""
    listeners = Listeners()
    o = Otel(listeners)
    limit = adaptive.limit("search", clock, listeners)
    throttle = adaptive.throttle("pricing", clock, listeners)
    o.listener.track(limit, throttle)
    m = o.metrics()
    assert point(m["adaptive_limit"], dependency="search") == 2
    assert point(m["adaptive_limit.min"], dependency="search") == 1
    assert point(m["adaptive_limit.max"], dependency="search") == 4
    assert point(m["throttle.probability"], dependency="pricing") == 0
    adaptive.drive(limit, throttle, listeners, clock)
    limit.acquire()
    try:
        m = o.metrics()
    finally:
        limit.release()
    assert point(m["adaptive_limit"], dependency="search") == 1
    assert point(m["adaptive_limit.in_flight"], dependency="search") == 1
    assert point(m["adaptive_limit.changes"], dependency="search", direction="up") == 1
    assert point(m["adaptive_limit.changes"], dependency="search", direction="down") == 1
    assert point(m["adaptive_limit.rejected"], dependency="search") == 1
    assert point(m["throttle.rejected"], dependency="pricing") == 1
    assert point(m["throttle.probability"], dependency="pricing") == pytest.approx(2 / 3)
    assert point(m["throttle.window_requests"], dependency="pricing") == 2
    assert point(m["throttle.window_accepts"], dependency="pricing") == 0
    assert point(m["load_shed"], dependency="api", priority="2") == 1
    assert m.get("bulkhead.max_concurrent", []) == []
    o.close()


def test_limit_of_a_custom_algorithm_has_no_bound_gauges(clock: FakeClock) -> None:
    """An algorithm with no config says no min or max: those gauges observe nothing."""

    class Fixed:
        limit = 7

        def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
            return self.limit

    o = Otel(Listeners())
    limit = AdaptiveLimit("fixed", algorithm=Fixed(), clock=clock)  # tracked weakly: kept here
    o.listener.track(limit)
    m = o.metrics()
    assert point(m["adaptive_limit"], dependency="fixed") == 7
    assert m.get("adaptive_limit.min", []) == []
    assert m.get("adaptive_limit.max", []) == []
    o.close()


def test_shared_store_outages_are_counted_and_shown_as_down(otel: Otel) -> None:
    """StoreUnavailable / StoreRecovered (Redis sharing) become a counter and an up gauge."""
    listeners = Listeners()
    otel.listener.install(listeners)
    listeners.emit(StoreUnavailable(name="shop", at=1.0, store="breakers", error="TimeoutError"))
    m = otel.metrics()
    assert point(m["shared_store.unavailable"], store="shop", kind="breakers") == 1
    assert point(m["shared_store.up"], store="shop", kind="breakers") == 0
    listeners.emit(StoreRecovered(name="shop", at=2.0, store="breakers", down_for=1.0))
    m = otel.metrics()
    assert point(m["shared_store.up"], store="shop", kind="breakers") == 1
    assert point(m["shared_store.unavailable"], store="shop", kind="breakers") == 1


def test_failing_listener_logged_once(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    """An OTel listener that raises on every call never breaks one; one record in all."""

    class Failing(OtelListener):
        __slots__ = ()

        def _on_completed(self, event: CallCompleted) -> None:
            raise RuntimeError("exporter bug")

    Failing(MeterProvider()).install(service.listeners)
    with caplog.at_level(logging.ERROR, "seawall.events"):
        assert [call(service.payment, ok) for _ in range(20)] == ["ok"] * 20
    assert len(caplog.records) == 1


def test_standalone_retry_on_global_providers(clock: FakeClock) -> None:
    """With no provider given, the global (no-op by default) meter is used without error."""
    listeners = Listeners()
    OtelListener().install(listeners)
    retry = Retry(attempts=2, backoff=Backoff.constant(0.1), clock=clock, listeners=listeners)
    with pytest.raises(Down):
        retry.call(fail)
