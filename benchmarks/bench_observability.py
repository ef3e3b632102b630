"""Observability: what each exporter adds to a call that succeeds.

Every row calls ``f() -> 1`` through the same ``Dependency`` (a circuit breaker,
``call_sync``), on its own ``Listeners``. The overhead column is against the
same dependency with no listener at all, so it includes the dependency's own
price for observing anything: reading the clock twice and building a
``CallCompleted`` event (the "no-op listener" row). Each exporter row adds its
handler on top of that.

Tables:

1. Dependency.call_sync success path, by exporter installed
2. one CallCompleted handled by each exporter alone (the handler's own cost),
   beside prometheus_client's own Counter.inc() + Histogram.observe()
3. the whole async pipeline (timeout, retry, breaker, bulkhead: ``await
   dep.call(f)``) with the Prometheus adapter attached, as a ratio to without
"""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

from benchmarks._harness import QUICK, Case, Table, compare
from seawall import Bulkhead, CircuitBreaker, Dependency, Listeners, Retry
from seawall.events import CallCompleted
from seawall.integrations.logging import LoggingListener
from seawall.integrations.otel import OtelListener
from seawall.integrations.prometheus import PrometheusMetrics

NUMBER = 100_000 if not QUICK else 10_000


def f() -> int:
    return 1


def _dependency(*exporters: str) -> Dependency:
    listeners = Listeners()
    for name in exporters:
        if name == "noop":
            listeners.add(lambda e: None, CallCompleted)
        elif name == "prometheus":
            PrometheusMetrics(CollectorRegistry()).install(listeners)
        elif name == "logging":
            LoggingListener().install(listeners)
        elif name == "otel":
            meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            OtelListener(meter_provider).install(listeners)
    return Dependency(
        "payment", breaker=CircuitBreaker("payment", listeners=listeners), listeners=listeners
    )


def call_path() -> Table:
    rows = [
        ("dependency, no listener", ()),
        ("dependency + no-op listener (event cost)", ("noop",)),
        ("seawall prometheus", ("prometheus",)),
        ("seawall logging", ("logging",)),
        ("seawall otel (metrics; span recording)", ("otel",)),
        ("prometheus + logging + otel", ("prometheus", "logging", "otel")),
    ]
    cases = []
    for title, exporters in rows:
        dep = _dependency(*exporters)
        cases.append(Case(title, lambda dep=dep: dep.call_sync(f)))
    return compare(
        "Dependency.call_sync success path, by exporter",
        cases,
        baseline="dependency, no listener",
        seawall="seawall prometheus",
        number=NUMBER,
        note="A recording OTel span is current during the run (span attributes are set).",
    )


def handlers() -> Table:
    event = CallCompleted(name="payment", at=0.0, outcome="success", duration=0.003)
    prom = PrometheusMetrics(CollectorRegistry())
    log = LoggingListener()
    otel = OtelListener(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    registry = CollectorRegistry()
    calls = Counter("calls", "", ["dependency", "outcome"], registry=registry)
    seconds = Histogram("seconds", "", ["dependency"], registry=registry)
    inc = calls.labels("payment", "success").inc
    observe = seconds.labels("payment").observe

    def client_metrics() -> None:
        inc()
        observe(0.003)

    return compare(
        "one CallCompleted, handler alone",
        [
            Case("bare", lambda: None),
            Case("seawall prometheus handler", lambda: prom._on_completed(event)),
            Case("prometheus_client Counter.inc + Histogram.observe", client_metrics),
            Case("seawall logging handler", lambda: log._on_completed(event)),
            Case("seawall otel handler (metrics + span)", lambda: otel._on_completed(event)),
        ],
        baseline="bare",
        number=NUMBER,
    )


async def af() -> int:
    return 1


def pipeline() -> Table:
    def full(listeners: Listeners) -> Dependency:
        return Dependency(
            "payment",
            timeout=5.0,
            retry=Retry(attempts=3, listeners=listeners),
            breaker=CircuitBreaker("payment", listeners=listeners),
            bulkhead=Bulkhead("payment", max_concurrent=100, listeners=listeners),
            listeners=listeners,
        )

    plain = full(Listeners())
    exported = Listeners()
    PrometheusMetrics(CollectorRegistry()).install(exported)
    with_prometheus = full(exported)
    table = compare(
        "Dependency pipeline (async, 4 policies) with the Prometheus adapter, against without",
        [
            Case("bare", af, is_async=True),
            Case("pipeline, no listener", lambda: plain.call(af), is_async=True),
            Case("seawall pipeline + prometheus", lambda: with_prometheus.call(af), is_async=True),
        ],
        baseline="bare",
        number=NUMBER,
    )
    ns = {r.name: r.ns for r in table.rows}
    ratio = ns["seawall pipeline + prometheus"] / ns["pipeline, no listener"]
    table.note = f"pipeline + prometheus / pipeline alone = {ratio:.2f}x per call"
    print(table.note)
    return table


def main() -> list[Table]:
    # A recording span is current for the whole run, as inside an instrumented
    # request: the OTel rows pay for setting span attributes.
    span = TracerProvider().get_tracer("bench").start_span("request")
    token = context.attach(trace.set_span_in_context(span))
    try:
        return [call_path(), handlers(), pipeline()]
    finally:
        context.detach(token)
        span.end()


if __name__ == "__main__":
    main()
