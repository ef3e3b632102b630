"""The logging listener: real policies decide, standard log records say so."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog
from pythonjsonlogger.json import JsonFormatter as RealJsonFormatter

from seawall import (
    Backoff,
    ConfigError,
    Criticality,
    Dependency,
    Fallback,
    Listeners,
    Retry,
    RetryBudget,
    State,
)
from seawall.errors import ThrottledError
from seawall.integrations.logging import LoggingListener
from seawall.testing import FakeClock
from tests.integrations import adaptive, scenario
from tests.integrations.scenario import Down, call, fail, ok

LOGGER = "tests.seawall"


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, LOGGER)
    return logging.getLogger(LOGGER)


def installed(logger: logging.Logger, clock: FakeClock, **kw: Any) -> Listeners:
    listeners = Listeners()
    LoggingListener(logger, clock=clock, **kw).install(listeners)
    return listeners


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k.startswith("seawall.")}


def records(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and (level is None or r.levelno == level)]


# -- circuit breakers -------------------------------------------------------------------


def test_error_when_a_circuit_opens(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures open a real breaker: one ERROR with rate, threshold and window size."""
    listeners = installed(logger, clock)
    dep = Dependency(
        "payment", breaker=scenario.breaker("payment", clock, listeners), listeners=listeners
    )
    scenario.open_circuit(dep)
    for _ in range(5):
        call(dep)  # rejected: not logged per call
    (record,) = records(caplog)
    assert record.levelno == logging.ERROR
    assert (
        record.getMessage()
        == "circuit 'payment' OPEN: failure rate 100.0% >= threshold 50.0% over 4 calls"
    )
    assert fields(record) == {
        "seawall.event": "StateChanged",
        "seawall.dependency": "payment",
        "seawall.state": "open",
        "seawall.previous_state": "closed",
        "seawall.reason": "failure rate",
        "seawall.rate": 1.0,
        "seawall.threshold": 0.5,
        "seawall.failure_rate": 1.0,
        "seawall.slow_call_rate": 0.0,
        "seawall.failure_rate_threshold": 0.5,
        "seawall.slow_call_rate_threshold": 1.0,
        "seawall.calls": 4,
        "seawall.shadow": False,
    }


def test_error_names_the_slow_call_rate(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A breaker opened by slow calls reports the slow-call rate and its threshold."""
    listeners = installed(logger, clock)
    breaker = scenario.breaker(
        "search", clock, listeners, slow_call_rate_threshold=0.5, slow_call_duration=1.0
    )

    def slow() -> None:
        clock.advance(2.0)

    while breaker.state is State.CLOSED:
        breaker.call(slow)
    (record,) = records(caplog, logging.ERROR)
    assert "slow-call rate 100.0% >= threshold 50.0% over 4 calls" in record.getMessage()
    assert fields(record)["seawall.rate"] == 1.0
    assert fields(record)["seawall.threshold"] == 0.5


def test_info_when_it_probes_and_closes(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """HALF_OPEN and CLOSED are INFO; a failed probe is another ERROR."""
    listeners = installed(logger, clock)
    dep = Dependency(
        "payment", breaker=scenario.breaker("payment", clock, listeners), listeners=listeners
    )
    scenario.open_circuit(dep)
    clock.advance(30)
    call(dep)  # the probe fails: OPEN again
    clock.advance(30)
    call(dep, ok)
    call(dep, ok)
    got = [(r.levelname, r.getMessage()) for r in records(caplog)]
    assert got[1:] == [
        ("INFO", "circuit 'payment' HALF_OPEN: open duration elapsed"),
        ("ERROR", "circuit 'payment' OPEN again: probe failed"),
        ("INFO", "circuit 'payment' HALF_OPEN: open duration elapsed"),
        ("INFO", "circuit 'payment' CLOSED: probes succeeded"),
    ]


def test_operator_actions_and_shadow_decisions(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Forcing a circuit open is a WARNING; a shadow breaker's opening is only INFO."""
    listeners = installed(logger, clock)
    scenario.breaker("payment", clock, listeners).force_open()
    shadow = scenario.breaker("beta", clock, listeners, shadow=True)
    for _ in range(4):
        with pytest.raises(Down):
            shadow.call(fail)
    forced, would = records(caplog)
    assert forced.levelno == logging.WARNING
    assert forced.getMessage().startswith("circuit 'payment' FORCED_OPEN")
    assert would.levelno == logging.INFO
    assert would.getMessage() == "shadow circuit 'beta' would go OPEN (failure rate)"
    assert fields(would)["seawall.shadow"] is True


# -- rate-limited warnings ------------------------------------------------------------------


def test_give_ups_are_rate_limited_per_dependency_and_reason(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten give-ups in a minute: one WARNING; the next one after a minute says nine were held."""
    listeners = installed(logger, clock, period=60)
    retry = Retry(
        attempts=2, backoff=Backoff.constant(0.1), name="payment", clock=clock, listeners=listeners
    )
    for _ in range(10):
        with pytest.raises(Down):
            retry.call(fail)
    first = records(caplog, logging.WARNING)
    assert len(first) == 1
    assert first[0].getMessage() == (
        "retry 'payment' gave up after 2 attempts: every attempt used (Down: connection refused)"
    )
    assert fields(first[0])["seawall.suppressed"] == 0
    assert fields(first[0])["seawall.error_type"] == "Down"
    clock.advance(60)
    with pytest.raises(Down):
        retry.call(fail)
    later = records(caplog, logging.WARNING)
    assert len(later) == 2
    assert fields(later[1])["seawall.suppressed"] == 9
    assert fields(later[1])["seawall.reason"] == "exhausted"


def test_budget_give_up_is_its_own_warning(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A give-up for another reason is not hidden by the first reason's rate limit."""
    listeners = installed(logger, clock)
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, capacity=1, clock=clock)
    retry = Retry(
        attempts=3,
        backoff=Backoff.constant(0.1),
        budget=budget,
        name="payment",
        clock=clock,
        listeners=listeners,
    )
    for _ in range(3):
        with pytest.raises(Down):
            retry.call(fail)
    reasons = [fields(r)["seawall.reason"] for r in records(caplog, logging.WARNING)]
    assert reasons == ["budget"]
    assert "the retry budget is empty" in records(caplog, logging.WARNING)[0].getMessage()


def test_bulkhead_fallback_and_outbox_warnings(
    logger: logging.Logger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refusals, failed fallbacks and dropped entries warn once per period each."""
    service = scenario.build(tmp_path)
    try:
        LoggingListener(logger, clock=service.clock).install(service.listeners)
        for _ in range(3):
            scenario.saturate_bulkhead(service.payment)
        stale = Dependency(
            "profile",
            criticality=Criticality.DEGRADABLE,
            fallback=Fallback.stale(60),
            clock=service.clock,
            listeners=service.listeners,
        )
        for _ in range(3):
            call(stale)  # nothing cached: the fallback fails
        for _ in range(4):
            service.notifications.send("mail", {})  # the last two are dropped
    finally:
        service.close()
    got = [
        (fields(r)["seawall.event"], fields(r)["seawall.dependency"])
        for r in records(caplog, logging.WARNING)
    ]
    assert got == [
        ("BulkheadRejected", "payment"),
        ("FallbackFailed", "profile"),
        ("OutboxDropped", "notifications"),
    ]
    dropped = records(caplog, logging.WARNING)[2]
    assert fields(dropped)["seawall.reason"] == "reject_new"
    assert fields(dropped)["seawall.depth"] == 2


def test_limit_refusals_warn_once_per_period_per_limit(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A real adaptive limit refusing calls: one WARNING per period, with the held count."""
    listeners = installed(logger, clock, period=60)
    limit = adaptive.limit("search", clock, listeners, algorithm="aimd", initial=2)
    other = adaptive.limit("pricing", clock, listeners)
    for _ in range(3):
        adaptive.refuse(limit)
    adaptive.refuse(other)
    first = records(caplog, logging.WARNING)
    assert [r.getMessage() for r in first] == [
        "adaptive limit 'search' reached: 2 calls in flight, call refused",
        "adaptive limit 'pricing' reached: 2 calls in flight, call refused",
    ]
    assert fields(first[0]) == {
        "seawall.event": "LimitRejected",
        "seawall.dependency": "search",
        "seawall.limit": 2,
        "seawall.suppressed": 0,
    }
    clock.advance(60)
    adaptive.refuse(limit)
    later = records(caplog, logging.WARNING)
    assert len(later) == 3
    assert fields(later[2])["seawall.suppressed"] == 2


def test_throttle_sheds_warn_once_per_period(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A real throttle shedding: one WARNING with the probability and the window's counts."""
    listeners = installed(logger, clock, period=60)
    throttle = adaptive.throttle("pricing", clock, listeners)
    adaptive.shed(throttle)
    for _ in range(4):
        with pytest.raises(ThrottledError):
            throttle.call(ok)
    (warning,) = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        "throttle 'pricing' shed a call: rejection probability 50.0% "
        "(2 requests, 0 accepted in the window)"
    )
    assert fields(warning) == {
        "seawall.event": "ThrottleRejected",
        "seawall.dependency": "pricing",
        "seawall.probability": 0.5,
        "seawall.requests": 2,
        "seawall.accepts": 0,
        "seawall.suppressed": 0,
    }
    clock.advance(60)
    with pytest.raises(ThrottledError):
        throttle.call(ok)
    assert fields(records(caplog, logging.WARNING)[1])["seawall.suppressed"] == 4


def test_load_shedding_warns_once_per_period_per_priority(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Shed requests: one WARNING per shedder and priority, so a shed priority 0 is not hidden."""
    listeners = installed(logger, clock, period=60)
    for priority in (3, 3, 3, 0, 0):
        adaptive.load_shed(listeners, clock, priority=priority)
    low, high = records(caplog, logging.WARNING)
    assert low.getMessage() == (
        "load shedding 'api' refused a priority 3 request to /search (limit 4, 4 in flight)"
    )
    assert fields(high) == {
        "seawall.event": "LoadShed",
        "seawall.dependency": "api",
        "seawall.route": "/search",
        "seawall.priority": 0,
        "seawall.limit": 4,
        "seawall.in_flight": 4,
        "seawall.suppressed": 0,
    }


def test_limit_moves_are_debug_and_a_halving_is_info(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Moves are DEBUG; a cut to half or less is INFO once per period, DEBUG in between."""
    listeners = installed(logger, clock, period=60)
    limit = adaptive.limit("search", clock, listeners)
    adaptive.raise_limit(limit, clock)  # 2 -> 3
    adaptive.cut_limit(limit, clock)  # 3 -> 1: INFO
    adaptive.raise_limit(limit, clock)  # 1 -> 2
    adaptive.cut_limit(limit, clock)  # 2 -> 1: a cut again, within the period: DEBUG
    clock.advance(60)
    adaptive.raise_limit(limit, clock)  # 1 -> 2
    adaptive.cut_limit(limit, clock)  # 2 -> 1: INFO, one held back
    got = [(r.levelname, r.getMessage()) for r in records(caplog)]
    assert got == [
        ("DEBUG", "adaptive limit 'search' raised from 2 to 3 (rtt 0.01s, 1 in flight)"),
        (
            "INFO",
            "adaptive limit 'search' cut from 3 to 1 (rtt 0.01s, 1 in flight, a call dropped)",
        ),
        ("DEBUG", "adaptive limit 'search' raised from 1 to 2 (rtt 0.01s, 1 in flight)"),
        (
            "DEBUG",
            "adaptive limit 'search' cut from 2 to 1 (rtt 0.01s, 1 in flight, a call dropped)",
        ),
        ("DEBUG", "adaptive limit 'search' raised from 1 to 2 (rtt 0.01s, 1 in flight)"),
        (
            "INFO",
            "adaptive limit 'search' cut from 2 to 1 (rtt 0.01s, 1 in flight, a call dropped)",
        ),
    ]
    first, last = records(caplog, logging.INFO)
    assert fields(first) == {
        "seawall.event": "LimitChanged",
        "seawall.dependency": "search",
        "seawall.limit": 1,
        "seawall.previous_limit": 3,
        "seawall.rtt": 0.01,
        "seawall.in_flight": 1,
        "seawall.dropped": True,
        "seawall.suppressed": 0,
    }
    assert fields(last)["seawall.suppressed"] == 1
    assert "seawall.suppressed" not in fields(records(caplog, logging.DEBUG)[0])


def test_small_limit_moves_are_not_built_without_debug(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With DEBUG off, a limit rising or easing down (not halved) logs nothing at all."""
    quiet = logging.getLogger(f"{LOGGER}.limits")
    quiet.setLevel(logging.INFO)
    listeners = Listeners()
    LoggingListener(quiet, clock=clock).install(listeners)
    limit = adaptive.limit("search", clock, listeners, initial=10, max=20, backoff_ratio=0.9)
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            limit.acquire()  # half the limit in use: AIMD grows it
        for _ in range(3):
            adaptive.raise_limit(limit, clock)  # 10 -> 11 -> 12 -> 13
        for _ in range(5):
            limit.release()
        adaptive.cut_limit(limit, clock)  # 13 -> 11: not a halving
    assert limit.limit == 11
    assert [r for r in caplog.records if r.name == quiet.name] == []


def test_sustained_degradation_warns_once_per_period_then_recovers(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """N fallback answers in a row: one WARNING per period; the next success: one INFO."""
    listeners = installed(logger, clock, degraded_calls=5, degraded_after=1000, period=60)
    dep = Dependency(
        "recommendations",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.value(()),
        clock=clock,
        listeners=listeners,
    )
    for _ in range(4):
        call(dep)
    assert not records(caplog)
    for _ in range(20):
        call(dep)
        clock.advance(1)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "dependency 'recommendations' degraded for 0s: 5 calls in a row answered by its value fallback"
    )
    clock.advance(60)
    call(dep)
    assert len(records(caplog, logging.WARNING)) == 2
    assert fields(records(caplog, logging.WARNING)[1])["seawall.degraded_calls"] == 25
    call(dep, ok)
    call(dep, ok)
    (info,) = records(caplog, logging.INFO)
    assert (
        info.getMessage()
        == "dependency 'recommendations' recovered after 80s degraded (25 fallback answers)"
    )


def test_degradation_by_time(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Two fallback answers 30 s apart with no success between are sustained degradation."""
    listeners = installed(logger, clock, degraded_after=30)
    dep = Dependency(
        "recommendations",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.value(()),
        clock=clock,
        listeners=listeners,
    )
    call(dep)
    clock.advance(29)
    call(dep)
    assert not records(caplog)
    clock.advance(1)
    call(dep)
    (warning,) = records(caplog, logging.WARNING)
    assert fields(warning)["seawall.degraded_for"] == 30


def test_short_degradation_recovers_silently(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A fallback answer or two followed by success logs nothing at all."""
    listeners = installed(logger, clock)
    dep = Dependency(
        "recommendations",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.value(()),
        clock=clock,
        listeners=listeners,
    )
    call(dep)
    call(dep, ok)
    for _ in range(100):
        call(dep, ok)
    assert not records(caplog)


def test_retries_at_debug_only(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """A scheduled retry is a DEBUG record, built only when DEBUG is enabled."""
    quiet = logging.getLogger(f"{LOGGER}.quiet")
    quiet.setLevel(logging.INFO)
    listeners = Listeners()
    LoggingListener(quiet, clock=clock).install(listeners)
    loud = logging.getLogger(f"{LOGGER}.loud")
    loud.setLevel(logging.DEBUG)
    LoggingListener(loud, clock=clock).install(listeners)
    retry = Retry(
        attempts=2, backoff=Backoff.constant(0.25), name="x", clock=clock, listeners=listeners
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(Down):
        retry.call(fail)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert [r.name for r in debug] == [f"{LOGGER}.loud"]
    assert (
        debug[0].getMessage()
        == "retry 'x': attempt 1 failed (Down: connection refused); next in 0.25s"
    )


# -- formatters ---------------------------------------------------------------------------


def _open_circuit_logged_through(formatter: logging.Formatter, clock: FakeClock) -> str:
    """Open a circuit with a logger whose one handler uses ``formatter``; return the output."""
    out = io.StringIO()
    logger = logging.getLogger(f"{LOGGER}.{type(formatter).__name__}")
    logger.propagate = False
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        listeners = Listeners()
        LoggingListener(logger, clock=clock).install(listeners)
        dep = Dependency(
            "payment", breaker=scenario.breaker("payment", clock, listeners), listeners=listeners
        )
        scenario.open_circuit(dep)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_dotted_fields_work_in_percent_format_strings(clock: FakeClock) -> None:
    """extra's dotted keys reach a %-format string by name."""
    formatter = logging.Formatter("%(levelname)s [%(seawall.dependency)s] %(message)s")
    text = _open_circuit_logged_through(formatter, clock)
    assert text.startswith("ERROR [payment] circuit 'payment' OPEN")


def test_python_json_logger_gets_every_field_unchanged(clock: FakeClock) -> None:
    """python-json-logger's JsonFormatter, as configured in many services, with no adapter."""
    payload = json.loads(
        _open_circuit_logged_through(RealJsonFormatter("%(levelname)s %(message)s"), clock)
    )
    assert payload["levelname"] == "ERROR"
    assert payload["message"].startswith("circuit 'payment' OPEN")
    assert payload["seawall.dependency"] == "payment"
    assert payload["seawall.state"] == "open"
    assert payload["seawall.calls"] == 4


def test_structlog_processor_formatter_gets_every_field_unchanged(clock: FakeClock) -> None:
    """structlog's ProcessorFormatter over stdlib records: ExtraAdder picks the fields up."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    payload = json.loads(_open_circuit_logged_through(formatter, clock))
    assert payload["level"] == "error"
    assert payload["event"].startswith("circuit 'payment' OPEN")
    assert payload["seawall.dependency"] == "payment"
    assert payload["seawall.failure_rate"] == 1.0
    assert payload["seawall.calls"] == 4


def test_nothing_logged_on_a_healthy_path(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Successful calls through every policy produce no record at any level."""
    listeners = installed(logger, clock)
    dep = Dependency(
        "payment",
        retry=Retry(attempts=2, clock=clock, listeners=listeners),
        breaker=scenario.breaker("payment", clock, listeners),
        listeners=listeners,
    )
    for _ in range(200):
        dep.call_sync(ok)
    assert not records(caplog)


def test_listener_is_callable_with_any_event(
    logger: logging.Logger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered for all events with Listeners.add, it handles the ones it knows."""
    listeners = Listeners()
    listeners.add(LoggingListener(logger, clock=clock))
    dep = Dependency(
        "payment", breaker=scenario.breaker("payment", clock, listeners), listeners=listeners
    )
    scenario.open_circuit(dep)
    assert [r.levelno for r in records(caplog)] == [logging.ERROR]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"period": -1}, "period"),
        ({"degraded_after": float("inf")}, "degraded_after"),
        ({"degraded_calls": 0}, "degraded_calls"),
    ],
)
def test_bad_options(kw: dict[str, Any], field: str) -> None:
    """Bad options fail at construction, naming each field."""
    with pytest.raises(ConfigError, match=field):
        LoggingListener(**kw)
