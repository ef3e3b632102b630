"""The Prometheus exporter: real policies decide, the real registry text says so."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seawall import (
    Backoff,
    CircuitBreaker,
    ConfigError,
    Criticality,
    Dependency,
    DependencyUnavailable,
    Fallback,
    Listeners,
    MemoryStaleStore,
    Registry,
    Retry,
    RetryBudget,
    ThreadBulkhead,
    deadline,
)
from seawall.adaptive import AdaptiveLimit
from seawall.events import CallCompleted, GiveUpReason, LimitChanged
from seawall.integrations import prometheus
from seawall.integrations.prometheus import METRICS, PrometheusMetrics
from seawall.testing import FakeClock
from seawall.throttle import Throttle
from tests.integrations import adaptive, scenario
from tests.integrations.scenario import Down, Service, call, fail, ok

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Parse the registry's real exposition text into {(sample name, labels): value}."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def service(tmp_path: Path) -> Any:
    svc = scenario.build(tmp_path)
    yield svc
    svc.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(service: Service, registry: CollectorRegistry) -> Any:
    exporter = prometheus.install(service, registry=registry, listeners=service.listeners)
    yield exporter
    exporter.close()


# -- one call installs it ---------------------------------------------------------


def test_install_exports_every_documented_family(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """Each METRICS entry appears with its HELP and TYPE, even before any event."""
    text = generate_latest(registry).decode()
    for spec in METRICS:
        assert f"# HELP {spec.name} " in text
        assert f"# TYPE {spec.name} {spec.type}" in text


def test_tracked_dependencies_start_at_zero(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """Series exist at 0 before the first event, so increase() sees the first one."""
    s = scrape(registry)
    for outcome in prometheus.OUTCOMES:
        assert value(s, "dependency_calls_total", dependency="payment", outcome=outcome) == 0
    for reason in GiveUpReason:
        assert value(s, "retry_give_ups_total", dependency="payment", reason=reason.value) == 0
    assert value(s, "circuit_breaker_open_total", dependency="payment") == 0
    assert value(s, "bulkhead_rejected_total", dependency="payment") == 0
    assert value(s, "fallback_used_total", dependency="recommendations", kind="value") == 0
    assert value(s, "outbox_dropped_total", dependency="notifications", reason="reject_new") == 0
    assert value(s, "dependency_info", dependency="payment", criticality="critical") == 1
    assert value(s, "dependency_info", dependency="notifications", criticality="background") == 1


# -- circuit breakers ----------------------------------------------------------------


def test_circuit_opened_by_failures(
    service: Service, metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """Failures open the breaker: one opening, state gauge OPEN, rejections counted."""
    scenario.open_circuit(service.payment)
    for _ in range(3):
        assert isinstance(call(service.payment, ok), DependencyUnavailable)
    s = scrape(registry)
    assert value(s, "circuit_breaker_open_total", dependency="payment") == 1
    assert value(s, "circuit_breaker_state", dependency="payment", state="open") == 1
    assert value(s, "circuit_breaker_state", dependency="payment", state="closed") == 0
    assert value(s, "circuit_breaker_failure_rate", dependency="payment") == 1.0
    assert value(s, "circuit_breaker_window_calls", dependency="payment") == 4
    assert value(s, "circuit_breaker_rejected_total", dependency="payment") == 3
    # 2 attempts per call, a window of 4: two failed calls opened it.
    assert value(s, "dependency_calls_total", dependency="payment", outcome="failure") == 2
    assert value(s, "dependency_calls_total", dependency="payment", outcome="rejected") == 3
    assert (
        value(
            s,
            "circuit_breaker_transitions_total",
            dependency="payment",
            from_state="closed",
            to_state="open",
        )
        == 1
    )


def test_state_is_read_at_scrape_time(
    service: Service, metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """After open_duration the scrape itself sees HALF_OPEN; good probes close it."""
    scenario.open_circuit(service.payment)
    service.clock.advance(30)
    s = scrape(registry)
    assert value(s, "circuit_breaker_state", dependency="payment", state="half_open") == 1
    call(service.payment, ok)
    call(service.payment, ok)
    s = scrape(registry)
    assert value(s, "circuit_breaker_state", dependency="payment", state="closed") == 1
    assert value(s, "circuit_breaker_open_total", dependency="payment") == 1
    closed = {"dependency": "payment", "from_state": "half_open", "to_state": "closed"}
    assert value(s, "circuit_breaker_transitions_total", **closed) == 1


def test_shadow_breaker_never_shows_as_open(registry: CollectorRegistry, clock: FakeClock) -> None:
    """A shadow breaker's would-be decisions have their own series; no alert sees them."""
    listeners = Listeners()
    shadow = scenario.breaker("beta", clock, listeners, shadow=True)
    exporter = prometheus.install([], registry=registry, listeners=listeners)
    exporter.track(shadow)
    for _ in range(5):
        with pytest.raises(Down):
            shadow.call(fail)
    s = scrape(registry)
    assert value(s, "circuit_breaker_shadow_state", dependency="beta", state="open") == 1
    assert value(s, "circuit_breaker_state", dependency="beta", state="open") is None
    assert value(s, "circuit_breaker_open_total", dependency="beta") is None
    assert (
        value(s, "circuit_breaker_shadow_decisions_total", dependency="beta", decision="open") == 1
    )
    assert (
        value(s, "circuit_breaker_shadow_decisions_total", dependency="beta", decision="reject")
        == 1
    )


# -- retries ----------------------------------------------------------------------------


def _retry_scenario(reason: GiveUpReason, clock: FakeClock, listeners: Listeners) -> None:
    if reason is GiveUpReason.EXHAUSTED:
        retry = Retry(attempts=3, backoff=Backoff.constant(0.1), clock=clock, listeners=listeners)
        with pytest.raises(Down):
            retry.call(fail)
    elif reason is GiveUpReason.BUDGET:
        budget = RetryBudget(ratio=0.0, min_per_second=0.0, capacity=1, clock=clock)
        retry = Retry(
            attempts=5,
            backoff=Backoff.constant(0.1),
            budget=budget,
            clock=clock,
            listeners=listeners,
        )
        with pytest.raises(Down):
            retry.call(fail)  # one retry takes the only token; the next finds none
    elif reason is GiveUpReason.DEADLINE:
        retry = Retry(attempts=5, backoff=Backoff.constant(10), clock=clock, listeners=listeners)
        with deadline(1.0), pytest.raises(Down):
            retry.call(fail)
    else:
        retry = Retry(
            attempts=5,
            backoff=Backoff.constant(0.1),
            max_elapsed=0.15,
            clock=clock,
            listeners=listeners,
        )
        with pytest.raises(Down):
            retry.call(fail)


@pytest.mark.parametrize("reason", list(GiveUpReason), ids=lambda r: r.value)
def test_retry_give_up_reasons(
    reason: GiveUpReason, registry: CollectorRegistry, clock: FakeClock
) -> None:
    """Each way a real Retry stops is counted under its own reason, and only there."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    _retry_scenario(reason, clock, listeners)
    s = scrape(registry)
    for other in GiveUpReason:
        expected = 1 if other is reason else None
        assert value(s, "retry_give_ups_total", dependency="retry", reason=other.value) == expected
    retries = {"exhausted": 2, "budget": 1, "deadline": None, "max_elapsed": 1}[reason.value]
    assert value(s, "retry_attempts_total", dependency="retry") == retries


def test_retry_budget_balance_is_read_live(
    service: Service, metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """The budget gauge follows withdrawals; the budget alert's counter follows give-ups."""
    s = scrape(registry)
    assert value(s, "retry_budget_capacity", dependency="payment") == 100
    assert value(s, "retry_budget_balance", dependency="payment") == 100
    call(service.payment)  # one retry: one token
    s = scrape(registry)
    assert value(s, "retry_budget_balance", dependency="payment") == 99
    assert value(s, "retry_attempts_total", dependency="payment") == 1
    assert value(s, "retry_give_ups_total", dependency="payment", reason="exhausted") == 1


def test_standalone_budget_tracked_by_name(registry: CollectorRegistry, clock: FakeClock) -> None:
    """A budget used outside any dependency is exported under the name given."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, capacity=3, clock=clock)
    exporter = prometheus.install(registry=registry, listeners=Listeners())
    exporter.track_budget(budget, "shared")
    assert budget.try_withdraw()
    assert value(scrape(registry), "retry_budget_balance", dependency="shared") == 2
    with pytest.raises(TypeError, match="track_budget"):
        exporter.track(budget)


# -- bulkheads -----------------------------------------------------------------------


def test_saturated_bulkhead(
    service: Service, metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """A held permit shows as in use; the next call is refused and counted."""
    bulkhead = service.payment.bulkhead
    assert isinstance(bulkhead, ThreadBulkhead)
    bulkhead.acquire()
    try:
        s = scrape(registry)
        assert value(s, "bulkhead_in_use", dependency="payment") == 1
        assert value(s, "bulkhead_max_concurrent", dependency="payment") == 1
        assert isinstance(call(service.payment, ok), DependencyUnavailable)
    finally:
        bulkhead.release()
    s = scrape(registry)
    assert value(s, "bulkhead_in_use", dependency="payment") == 0
    assert value(s, "bulkhead_rejected_total", dependency="payment") == 1
    assert value(s, "dependency_calls_total", dependency="payment", outcome="rejected") == 1


def test_async_bulkhead(registry: CollectorRegistry) -> None:
    """An asyncio bulkhead's refusals and permits are exported the same way."""
    listeners = Listeners()
    exporter = prometheus.install(registry=registry, listeners=listeners)
    bulkhead = scenario.async_bulkhead_queue(listeners)
    exporter.track(bulkhead)
    s = scrape(registry)
    assert value(s, "bulkhead_rejected_total", dependency="search") == 1
    assert value(s, "bulkhead_in_use", dependency="search") == 0
    assert value(s, "bulkhead_waiting", dependency="search") == 0


# -- fallbacks, timeouts, durations -----------------------------------------------------


def test_fallbacks_by_kind(registry: CollectorRegistry, clock: FakeClock) -> None:
    """Value, call and stale fallbacks are counted by kind; a stale miss as failed."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    store = MemoryStaleStore(clock=clock)
    deps = {
        kind: Dependency(
            f"recs-{kind}",
            criticality=Criticality.DEGRADABLE,
            fallback=fallback,
            clock=clock,
            listeners=listeners,
        )
        for kind, fallback in (
            ("value", Fallback.value(())),
            ("call", Fallback.call(lambda exc: ())),
            ("stale", Fallback.stale(60, store, key=lambda *a, **k: "same")),
        )
    }
    for dep in deps.values():
        dep.call_sync(ok)
        assert dep.call_sync_result(fail).degraded is not None
    clock.advance(61)  # the stale value is too old now
    with pytest.raises(DependencyUnavailable):
        deps["stale"].call_sync(fail)
    s = scrape(registry)
    for kind in deps:
        assert value(s, "fallback_used_total", dependency=f"recs-{kind}", kind=kind) == 1
        assert value(s, "dependency_calls_total", dependency=f"recs-{kind}", outcome="fallback")
    assert value(s, "fallback_failed_total", dependency="recs-stale", kind="stale") == 1


def test_timeout_counted_as_outcome(registry: CollectorRegistry) -> None:
    """An async call that outlives its timeout is a timeout, in both counters."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    assert isinstance(scenario.time_out(listeners), DependencyUnavailable)
    s = scrape(registry)
    assert value(s, "timeouts_total", dependency="search") == 1
    assert value(s, "dependency_calls_total", dependency="search", outcome="timeout") == 1


def test_duration_histogram_buckets(registry: CollectorRegistry, clock: FakeClock) -> None:
    """Durations land in the first bucket whose bound is >= them (le), cumulatively."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    dep = Dependency("db", clock=clock, listeners=listeners)

    def takes(seconds: float) -> Any:
        def fn() -> None:
            clock.advance(seconds)

        return fn

    for seconds in (0.25, 0.3, 2.0):
        dep.call_sync(takes(seconds))
    s = scrape(registry)

    def bucket(le: str) -> float | None:
        return value(s, "dependency_call_duration_seconds_bucket", dependency="db", le=le)

    assert bucket("0.1") == 0
    assert bucket("0.25") == 1  # 0.25 <= 0.25
    assert bucket("0.5") == 2
    assert bucket("1.0") == 2
    assert bucket("2.5") == 3
    assert bucket("+Inf") == 3
    assert value(s, "dependency_call_duration_seconds_count", dependency="db") == 3
    assert value(s, "dependency_call_duration_seconds_sum", dependency="db") == pytest.approx(2.55)


def test_custom_buckets_and_namespace(registry: CollectorRegistry, clock: FakeClock) -> None:
    """A namespace prefixes every name; custom bounds replace the default ones."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners, namespace="shop", buckets=[1, 5])
    Dependency("db", clock=clock, listeners=listeners).call_sync(ok)
    s = scrape(registry)
    assert value(s, "shop_dependency_calls_total", dependency="db", outcome="success") == 1
    les = {dict(labels)["le"] for name, labels in s if name.endswith("_bucket")}
    assert les == {"1.0", "5.0", "+Inf"}
    assert value(s, "dependency_calls_total", dependency="db", outcome="success") is None


@pytest.mark.parametrize("buckets", [[], [0.5, 0.1], [0, 1], [float("nan")]])
def test_bad_buckets(buckets: list[float]) -> None:
    """Bad histogram bounds fail at construction, naming the value."""
    with pytest.raises(ConfigError, match="buckets"):
        PrometheusMetrics(CollectorRegistry(), buckets=buckets)


# -- outboxes ---------------------------------------------------------------------------


def test_outbox_depth_age_drops_and_dead_letters(
    service: Service, metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    """Depth and oldest age are read live; drops, failures, deliveries come from events."""
    service.notifications.send("mail", {"bad": True})
    service.notifications.send("mail", {"to": "a@example.com"})
    assert service.notifications.send("mail", {"to": "b@example.com"}) is None  # full
    service.clock.advance(42)
    s = scrape(registry)
    assert value(s, "outbox_depth", dependency="notifications") == 2
    assert value(s, "outbox_oldest_age_seconds", dependency="notifications") == pytest.approx(42)
    assert value(s, "outbox_dropped_total", dependency="notifications", reason="reject_new") == 1
    service.outbox.deliver_due()
    service.clock.advance(120)
    service.outbox.deliver_due()
    s = scrape(registry)
    assert value(s, "outbox_depth", dependency="notifications") == 0
    assert value(s, "outbox_oldest_age_seconds", dependency="notifications") == 0
    assert value(s, "outbox_dead_letters", dependency="notifications") == 1
    assert value(s, "outbox_delivered_total", dependency="notifications") == 1
    assert value(s, "outbox_delivery_failures_total", dependency="notifications") == 1
    assert value(s, "outbox_dropped_total", dependency="notifications", reason="max_attempts") == 1


# -- tracking -----------------------------------------------------------------------------


def test_tracking_never_keeps_a_policy_alive(registry: CollectorRegistry, clock: FakeClock) -> None:
    """A tracked breaker that is dropped is collected, and leaves the scrape."""
    exporter = prometheus.install(registry=registry, listeners=Listeners())
    temporary = CircuitBreaker("temporary", clock=clock)
    exporter.track(temporary)
    assert value(scrape(registry), "circuit_breaker_state", dependency="temporary", state="closed")
    ref = weakref.ref(temporary)
    del temporary
    gc.collect()
    assert ref() is None
    assert (
        value(scrape(registry), "circuit_breaker_state", dependency="temporary", state="closed")
        is None
    )


def test_registry_growing_after_install(registry: CollectorRegistry, tmp_path: Path) -> None:
    """Dependencies added to a registry after install() show up at the next scrape."""

    class Registry:
        def __init__(self) -> None:
            self.dependencies: dict[str, Dependency] = {}

    reg = Registry()
    prometheus.install(reg, registry=registry, listeners=Listeners())
    assert (
        value(scrape(registry), "dependency_info", dependency="late", criticality="critical")
        is None
    )
    reg.dependencies["late"] = Dependency("late", breaker=CircuitBreaker("late"))
    s = scrape(registry)
    assert value(s, "dependency_info", dependency="late", criticality="critical") == 1
    assert value(s, "circuit_breaker_state", dependency="late", state="closed") == 1


def test_track_rejects_unknown_objects(metrics: PrometheusMetrics) -> None:
    """Tracking something that is not a policy fails at once, naming it."""
    with pytest.raises(TypeError, match="can track"):
        metrics.track(42)


def test_same_name_twice_exports_first_and_warns_once(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Two breakers named alike would duplicate series: the first wins, with one warning."""
    exporter = prometheus.install(registry=registry, listeners=Listeners())
    first, second = CircuitBreaker("twin"), CircuitBreaker("twin")
    second.force_open()
    exporter.track(first, second)
    with caplog.at_level(logging.WARNING, "seawall.integrations"):
        for _ in range(3):
            s = scrape(registry)
    assert value(s, "circuit_breaker_state", dependency="twin", state="closed") == 1
    assert len([r for r in caplog.records if "twin" in r.getMessage()]) == 1


def test_broken_tracked_object_skipped_and_logged_once(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A gauge source that raises does not break the scrape; it is logged once."""

    class Broken(ThreadBulkhead):
        __slots__ = ()

        @property
        def in_use(self) -> int:
            raise RuntimeError("boom")

    exporter = prometheus.install(registry=registry, listeners=Listeners())
    kept = [Broken("broken", max_concurrent=1), ThreadBulkhead("fine", max_concurrent=2)]
    exporter.track(kept)
    with caplog.at_level(logging.ERROR, "seawall.integrations"):
        for _ in range(3):
            s = scrape(registry)
    assert value(s, "bulkhead_max_concurrent", dependency="fine") == 2
    assert value(s, "bulkhead_in_use", dependency="broken") is None
    assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 1


# -- isolation and cost ----------------------------------------------------------------------


def test_failing_exporter_never_breaks_a_call(
    registry: CollectorRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An exporter that raises on every call: calls succeed, one log record in all."""

    class Failing(PrometheusMetrics):
        __slots__ = ()

        def _on_completed(self, event: CallCompleted) -> None:
            raise RuntimeError("exporter bug")

    listeners = Listeners()
    exporter = Failing(registry)
    exporter.install(listeners)
    dep = Dependency("pay", breaker=scenario.breaker("pay", clock, listeners), listeners=listeners)
    with caplog.at_level(logging.ERROR, "seawall.events"):
        assert [dep.call_sync(ok) for _ in range(50)] == ["ok"] * 50
        scenario.open_circuit(dep)
    assert len(caplog.records) == 1
    assert "raised" in caplog.records[0].getMessage()
    # Its other handlers still count.
    assert value(scrape(registry), "circuit_breaker_open_total", dependency="pay") == 1


def test_close_removes_listeners_and_collector(registry: CollectorRegistry) -> None:
    """close() undoes install(): no subscription left, nothing exported, name reusable."""
    listeners = Listeners()
    exporter = prometheus.install(registry=registry, listeners=listeners)
    assert listeners
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry)
    exporter.close()
    assert not listeners
    assert "dependency_calls_total" not in generate_latest(registry).decode()
    prometheus.install(registry=registry, listeners=listeners).close()


def test_event_counters_are_thread_safe(registry: CollectorRegistry) -> None:
    """Concurrent calls from threads lose no count."""
    import threading

    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    dep = Dependency("db", listeners=listeners)

    def work() -> None:
        for _ in range(2000):
            dep.call_sync(ok)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = scrape(registry)
    assert value(s, "dependency_calls_total", dependency="db", outcome="success") == 8000
    assert value(s, "dependency_call_duration_seconds_count", dependency="db") == 8000


# -- serving -------------------------------------------------------------------------


def test_asgi_app_serves_the_registry(service: Service, metrics: PrometheusMetrics) -> None:
    """The /metrics ASGI app answers 200 with the exposition text."""
    scenario.open_circuit(service.payment)
    app = metrics.asgi_app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "query_string": b"",
        "headers": [],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    body = sent[1]["body"].decode()
    assert 'circuit_breaker_open_total{dependency="payment"} 1.0' in body
    assert 'circuit_breaker_state{dependency="payment",state="open"} 1.0' in body


def test_metrics_mounted_in_starlette(service: Service, metrics: PrometheusMetrics) -> None:
    """Mounted at /metrics in a Starlette app, a real HTTP GET scrapes it."""
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    call(service.payment, ok)
    app = Starlette(routes=[Mount("/metrics", app=metrics.asgi_app())])

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return await client.get("/metrics/")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'dependency_calls_total{dependency="payment",outcome="success"} 1.0' in response.text


def test_import_seawall_imports_no_exporter() -> None:
    """The core never imports prometheus_client or opentelemetry."""
    code = (
        "import sys, seawall, seawall.events, seawall.dependency\n"
        "bad = [m for m in sys.modules if m.startswith(('prometheus_client', 'opentelemetry'))]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shared_store_outages_are_counted_and_shown_as_down() -> None:
    """StoreUnavailable / StoreRecovered (Redis sharing) become a counter and an up gauge."""
    from prometheus_client import CollectorRegistry, generate_latest

    from seawall.events import Listeners, StoreRecovered, StoreUnavailable
    from seawall.integrations.prometheus import install

    listeners = Listeners()
    registry = CollectorRegistry()
    metrics = install(registry=registry, listeners=listeners)
    listeners.emit(StoreUnavailable(name="shop", at=1.0, store="breakers", error="TimeoutError"))
    text = generate_latest(registry).decode()
    assert 'shared_store_unavailable_total{kind="breakers",store="shop"} 1.0' in text
    assert 'shared_store_up{kind="breakers",store="shop"} 0.0' in text
    listeners.emit(StoreRecovered(name="shop", at=2.0, store="breakers", down_for=1.0))
    assert 'shared_store_up{kind="breakers",store="shop"} 1.0' in generate_latest(registry).decode()
    metrics.close()


def test_one_call_installs_it_for_a_real_registry(registry: CollectorRegistry) -> None:
    """prometheus.install(Registry): its dependencies' gauges and their calls' events."""
    listeners = Listeners()
    services = Registry.from_mapping(
        {
            "defaults": {"breaker": {"minimum_calls": 2, "window": {"kind": "count", "size": 4}}},
            "dependencies": {
                "payment": {"timeout": 1.0, "bulkhead": {"max_concurrent": 3, "kind": "thread"}},
                "reviews": {
                    "criticality": "degradable",
                    "fallback": {"kind": "value", "value": []},
                },
            },
        },
        listeners=listeners,
    )
    prometheus.install(services, registry=registry, listeners=listeners)
    assert services["payment"].call_sync(lambda: "paid") == "paid"
    for _ in range(2):
        assert services["reviews"].call_sync(fail) == []
    s = scrape(registry)
    assert value(s, "dependency_info", dependency="payment", criticality="critical") == 1
    assert value(s, "dependency_calls_total", dependency="payment", outcome="success") == 1
    assert value(s, "dependency_calls_total", dependency="reviews", outcome="fallback") == 2
    assert value(s, "circuit_breaker_state", dependency="reviews", state="open") == 1
    assert value(s, "bulkhead_max_concurrent", dependency="payment") == 3


# -- adaptive limits, throttles, load shedding -------------------------------------------


def test_adaptive_limit_throttle_and_load_shed_series(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    """A real limit and throttle decide; gauges follow them, counters count each decision."""
    listeners = Listeners()
    exporter = prometheus.install(registry=registry, listeners=listeners)
    limit = adaptive.limit("search", clock, listeners)
    throttle = adaptive.throttle("pricing", clock, listeners)
    exporter.track(limit, throttle)
    s = scrape(registry)
    assert value(s, "adaptive_limit", dependency="search") == 2
    assert value(s, "adaptive_limit_in_flight", dependency="search") == 0
    assert value(s, "adaptive_limit_min", dependency="search") == 1
    assert value(s, "adaptive_limit_max", dependency="search") == 4
    assert value(s, "adaptive_limit_rejected_total", dependency="search") == 0
    for direction in ("up", "down"):
        changes = value(s, "adaptive_limit_changes_total", dependency="search", direction=direction)
        assert changes == 0
    assert value(s, "throttle_probability", dependency="pricing") == 0
    assert value(s, "throttle_window_requests", dependency="pricing") == 0
    assert value(s, "throttle_rejected_total", dependency="pricing") == 0
    limit.acquire()
    assert value(scrape(registry), "adaptive_limit_in_flight", dependency="search") == 1
    limit.release()

    adaptive.drive(limit, throttle, listeners, clock)
    s = scrape(registry)
    assert value(s, "adaptive_limit", dependency="search") == 1  # 2, up to 3, cut to 1
    assert value(s, "adaptive_limit_in_flight", dependency="search") == 0
    assert value(s, "adaptive_limit_changes_total", dependency="search", direction="up") == 1
    assert value(s, "adaptive_limit_changes_total", dependency="search", direction="down") == 1
    assert value(s, "adaptive_limit_rejected_total", dependency="search") == 1
    assert value(s, "throttle_probability", dependency="pricing") == pytest.approx(2 / 3)
    assert value(s, "throttle_window_requests", dependency="pricing") == 2
    assert value(s, "throttle_window_accepts", dependency="pricing") == 0
    assert value(s, "throttle_rejected_total", dependency="pricing") == 1
    assert value(s, "load_shed_total", dependency="api", priority="2") == 1
    # Neither is a bulkhead: no bulkhead series for them.
    assert value(s, "bulkhead_max_concurrent", dependency="search") is None
    assert value(s, "bulkhead_rejected_total", dependency="search") is None


def test_load_shed_counted_by_priority(registry: CollectorRegistry, clock: FakeClock) -> None:
    """Each priority a shedder refuses is its own series, labelled with the shedder's name."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    for priority in (3, 3, 0):
        adaptive.load_shed(listeners, clock, priority=priority)
    s = scrape(registry)
    assert value(s, "load_shed_total", dependency="api", priority="3") == 2
    assert value(s, "load_shed_total", dependency="api", priority="0") == 1
    assert value(s, "load_shed_total", dependency="api", priority="1") is None


def test_dependency_with_an_adaptive_limit_and_a_throttle(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    """A dependency's adaptive limit is exported as a limit, not a bulkhead; its throttle too."""
    listeners = Listeners()
    dep = Dependency(
        "search",
        bulkhead=adaptive.limit("search", clock, listeners),
        throttle=adaptive.throttle("search", clock, listeners),
        clock=clock,
        listeners=listeners,
    )
    prometheus.install([dep], registry=registry, listeners=listeners)
    s = scrape(registry)
    assert value(s, "adaptive_limit", dependency="search") == 2
    assert value(s, "adaptive_limit_rejected_total", dependency="search") == 0
    assert value(s, "throttle_rejected_total", dependency="search") == 0
    assert value(s, "throttle_probability", dependency="search") == 0
    assert value(s, "bulkhead_max_concurrent", dependency="search") is None
    assert value(s, "bulkhead_rejected_total", dependency="search") is None
    assert dep.call_sync(adaptive.served(clock)) == "ok"  # a window closes: 2 -> 3
    assert dep.limit is not None
    dep.limit.acquire()
    try:
        s = scrape(registry)
        assert value(s, "adaptive_limit", dependency="search") == 3
        assert value(s, "adaptive_limit_in_flight", dependency="search") == 1
    finally:
        dep.limit.release()
    s = scrape(registry)
    assert value(s, "adaptive_limit_changes_total", dependency="search", direction="up") == 1
    assert value(s, "throttle_window_accepts", dependency="search") == 1
    assert value(s, "dependency_calls_total", dependency="search", outcome="success") == 1


def test_registry_limit_and_throttle_tables(registry: CollectorRegistry) -> None:
    """A Registry's limit and throttle tables are tracked through the registry."""
    listeners = Listeners()
    services = Registry.from_mapping(
        {
            "dependencies": {
                "search": {
                    "limit": {"algorithm": "aimd", "initial": 5, "min": 2, "max": 50},
                    "throttle": {"k": 2.0, "window": 30},
                },
            },
        },
        listeners=listeners,
    )
    prometheus.install(services, registry=registry, listeners=listeners)
    s = scrape(registry)
    assert value(s, "adaptive_limit", dependency="search") == 5
    assert value(s, "adaptive_limit_min", dependency="search") == 2
    assert value(s, "adaptive_limit_max", dependency="search") == 50
    assert value(s, "throttle_probability", dependency="search") == 0


def test_limit_of_a_custom_algorithm_has_no_bounds(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    """An algorithm without a config says no min or max: those two gauges are left out."""

    class Fixed:
        limit = 7

        def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
            return self.limit

    exporter = prometheus.install(registry=registry, listeners=Listeners())
    limit = AdaptiveLimit("fixed", algorithm=Fixed(), clock=clock)
    exporter.track(limit)
    s = scrape(registry)
    assert value(s, "adaptive_limit", dependency="fixed") == 7
    assert value(s, "adaptive_limit_min", dependency="fixed") is None
    assert value(s, "adaptive_limit_max", dependency="fixed") is None


def test_broken_limit_and_throttle_skipped_and_logged_once(
    registry: CollectorRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A limit or throttle whose reading raises leaves the scrape whole, logged once each."""

    class BrokenLimit(AdaptiveLimit):
        __slots__ = ()

        @property
        def in_flight(self) -> int:
            raise RuntimeError("boom")

    class BrokenThrottle(Throttle):
        __slots__ = ()

        @property
        def probability(self) -> float:
            raise RuntimeError("boom")

    listeners = Listeners()
    exporter = prometheus.install(registry=registry, listeners=listeners)
    dep = Dependency(
        "broken",
        bulkhead=BrokenLimit("broken", clock=clock, listeners=listeners),
        throttle=BrokenThrottle("broken", clock=clock, listeners=listeners),
        clock=clock,
        listeners=listeners,
    )
    fine = adaptive.limit("fine", clock, listeners)
    exporter.track(dep, fine)
    with caplog.at_level(logging.ERROR, "seawall.integrations"):
        for _ in range(3):
            s = scrape(registry)
    assert value(s, "adaptive_limit", dependency="fine") == 2
    assert value(s, "adaptive_limit", dependency="broken") is None
    assert value(s, "throttle_probability", dependency="broken") is None
    # The dependency names them: their counters still start at zero.
    assert value(s, "adaptive_limit_rejected_total", dependency="broken") == 0
    assert value(s, "throttle_rejected_total", dependency="broken") == 0
    assert value(s, "dependency_info", dependency="broken", criticality="critical") == 1
    logged = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert logged == [
        "reading limit 'broken' for metrics raised; it is skipped",
        "reading throttle 'broken' for metrics raised; it is skipped",
    ]


def test_limit_changes_counted_by_direction(registry: CollectorRegistry) -> None:
    """Each change counts under its direction, up or down; a thousand of them lose none."""
    listeners = Listeners()
    prometheus.install(registry=registry, listeners=listeners)
    for i in range(1000):
        old, new = (5, 6) if i % 2 else (6, 5)
        listeners.emit(
            LimitChanged(name="db", at=0.0, old=old, new=new, rtt=0.01, in_flight=3, dropped=False)
        )
    s = scrape(registry)
    assert value(s, "adaptive_limit_changes_total", dependency="db", direction="up") == 500
    assert value(s, "adaptive_limit_changes_total", dependency="db", direction="down") == 500
