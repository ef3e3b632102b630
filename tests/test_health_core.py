"""Health without a framework: concurrency, timeouts, the cache, probe storms, breakers, secrecy."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from seawall import CircuitBreaker, ConfigError, Criticality, Dependency, Fallback, State
from seawall.events import Listeners
from seawall.health import Check, Health
from seawall.testing import FakeClock
from seawall.timeouts import deadline, remaining

# Generous bounds for a loaded machine; the point is "not the sum", "not the hang".
SLACK = 0.5


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Probe:
    """A check function that counts its calls and does what it is told."""

    def __init__(
        self, *, sleep: float = 0.0, result: object = None, error: BaseException | None = None
    ) -> None:
        self.sleep = sleep
        self.result = result
        self.error = error
        self.calls = 0
        self.cancelled = 0

    async def __call__(self) -> object:
        self.calls += 1
        try:
            if self.sleep:
                await asyncio.sleep(self.sleep)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return self.result


def dependency(name: str, criticality: Criticality, *, shadow: bool = False) -> Dependency:
    breaker = CircuitBreaker(name, shadow=shadow, listeners=Listeners())
    fallback = Fallback.value(None) if criticality is Criticality.DEGRADABLE else None
    return Dependency(
        name, criticality=criticality, breaker=breaker, fallback=fallback, listeners=Listeners()
    )


# -- running the checks --------------------------------------------------------------


def test_checks_run_concurrently() -> None:
    """Three checks of 100 ms each take about 100 ms together, not 300."""
    probes = [Probe(sleep=0.1) for _ in range(3)]
    health = Health([Check(f"c{i}", p) for i, p in enumerate(probes)], cache_ttl=0)
    started = time.monotonic()
    report = run(health.readiness())
    elapsed = time.monotonic() - started
    assert report.ok
    assert 0.1 <= elapsed < 0.2
    assert [r.status for r in report.checks] == ["ok", "ok", "ok"]
    assert all(r.latency >= 0.09 for r in report.checks)


def test_a_hung_check_times_out_at_its_own_timeout_and_is_cancelled() -> None:
    """A check that would take 10 s is reported "timeout" after its 50 ms, and cancelled."""
    hung = Probe(sleep=10)
    fast = Probe()
    health = Health(
        [Check("hung", hung, timeout=0.05), Check("fast", fast, timeout=5)], cache_ttl=0
    )

    async def main() -> Any:
        started = time.monotonic()
        report = await health.readiness()
        elapsed = time.monotonic() - started
        await asyncio.sleep(0)  # the cancellation lands on the next loop turn
        return report, elapsed

    report, elapsed = run(main())
    assert 0.05 <= elapsed < 0.05 + SLACK
    assert report.status == "failed"
    assert report.to_dict()["checks"] == {
        "hung": {
            "status": "timeout",
            "latency_ms": pytest.approx(50, abs=SLACK * 1000),
            "required": True,
        },
        "fast": {
            "status": "ok",
            "latency_ms": pytest.approx(0, abs=SLACK * 1000),
            "required": True,
        },
    }
    assert hung.cancelled == 1


def test_a_call_that_resists_cancellation_is_not_called_again_until_it_ends() -> None:
    """While a timed-out call is still finishing, later probes report "timeout" at once and press the cancel again."""
    calls = 0
    cancels = 0

    async def stubborn(gate: asyncio.Event) -> None:
        nonlocal calls, cancels
        calls += 1
        if calls > 1:
            return
        while True:  # a driver "cleaning up" after a cancel: ignores the first ones
            try:
                await gate.wait()
                return
            except asyncio.CancelledError:
                cancels += 1
                if cancels >= 3:
                    raise

    async def main() -> None:
        gate = asyncio.Event()
        health = Health([Check("db", lambda: stubborn(gate), timeout=0.1)], cache_ttl=0)
        first = await health.readiness()
        assert first.checks[0].status == "timeout"
        started = time.monotonic()
        second = await health.readiness()
        assert time.monotonic() - started < 0.05  # not another 100 ms: nothing new was started
        assert second.checks[0].status == "timeout"
        assert second.checks[0].latency >= 0.1  # how long the stuck call has been running
        assert calls == 1
        await asyncio.sleep(0)
        assert cancels == 2  # the timeout's cancel, then the second probe's
        await health.readiness()  # the third cancel ends it
        await asyncio.sleep(0)
        assert cancels == 3
        third = await health.readiness()
        assert third.ok
        assert calls == 2

    run(main())


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"result": None}, "ok"),
        ({"result": True}, "ok"),
        ({"result": "PONG"}, "ok"),
        ({"result": False}, "failed"),
        ({"error": ConnectionRefusedError("refused")}, "failed"),
        ({"error": TimeoutError("client timeout")}, "timeout"),
    ],
)
def test_what_a_check_returns_or_raises(kwargs: dict[str, Any], status: str) -> None:
    health = Health([Check("c", Probe(**kwargs))])
    report = run(health.readiness())
    assert report.checks[0].status == status
    assert report.ok is (status == "ok")


def test_a_plain_function_may_be_a_check() -> None:
    health = Health([Check("sync", lambda: True), Check("bad", lambda: False, required=False)])
    report = run(health.readiness())
    assert report.ok
    assert [r.status for r in report.checks] == ["ok", "failed"]


def test_only_required_checks_decide() -> None:
    """A failing optional check is reported; a failing required one fails readiness."""
    cache_down = Check("cache", Probe(error=ConnectionError()), required=False)
    db_up = Check("db", Probe())
    assert run(Health([cache_down, db_up]).readiness()).to_dict() == {
        "status": "ok",
        "checks": {
            "cache": {
                "status": "failed",
                "latency_ms": pytest.approx(0, abs=100),
                "required": False,
            },
            "db": {"status": "ok", "latency_ms": pytest.approx(0, abs=100), "required": True},
        },
    }
    db_down = Check("db", Probe(error=ConnectionError()))
    assert run(Health([cache_down, db_down]).readiness()).status == "failed"


def test_no_checks_means_ready() -> None:
    assert run(Health().readiness()).ok


def test_liveness_checks_nothing() -> None:
    probe = Probe(error=ConnectionError())
    health = Health([Check("db", probe)])
    assert health.liveness().ok
    assert health.liveness().to_dict() == {"status": "ok", "checks": {}}
    assert probe.calls == 0


# -- the cache and probe storms ----------------------------------------------------------


def test_results_are_cached_for_the_ttl(clock: FakeClock) -> None:
    probe = Probe()
    health = Health([Check("db", probe)], cache_ttl=2.0, clock=clock)

    async def main() -> None:
        await health.readiness()
        clock.advance(1.9)
        await health.readiness()
        assert probe.calls == 1
        clock.advance(0.1)
        await health.readiness()
        assert probe.calls == 2

    run(main())


def test_a_failure_is_cached_too_and_recovery_shows_after_the_ttl(clock: FakeClock) -> None:
    probe = Probe(error=ConnectionError())
    health = Health([Check("db", probe)], cache_ttl=timedelta(seconds=1), clock=clock)

    async def main() -> None:
        assert (await health.readiness()).status == "failed"
        probe.error = None
        assert (await health.readiness()).status == "failed"  # cached
        clock.advance(1.0)
        assert (await health.readiness()).ok

    run(main())


def test_a_probe_storm_shares_one_evaluation() -> None:
    """100 concurrent probes while the check runs: the check runs once."""
    probe = Probe(sleep=0.05)
    health = Health([Check("db", probe)], cache_ttl=0)

    async def main() -> list[Any]:
        return await asyncio.gather(*(health.readiness() for _ in range(100)))

    reports = run(main())
    assert probe.calls == 1
    assert all(r.ok for r in reports)
    assert len({id(r.checks) for r in reports}) == 1


def test_a_probe_that_gives_up_does_not_cancel_the_others() -> None:
    probe = Probe(sleep=0.05)
    health = Health([Check("db", probe)], cache_ttl=0)

    async def main() -> None:
        impatient = asyncio.create_task(health.readiness())
        patient = asyncio.create_task(health.readiness())
        await asyncio.sleep(0.01)
        impatient.cancel()
        assert (await patient).ok
        with pytest.raises(asyncio.CancelledError):
            await impatient

    run(main())
    assert probe.calls == 1
    assert probe.cancelled == 0


def test_checks_do_not_run_under_the_probing_request_deadline() -> None:
    """The shared evaluation starts from an empty context: no one request's deadline or record."""
    seen: list[float | None] = []

    async def check() -> None:
        seen.append(remaining())

    async def main() -> None:
        with deadline(5.0):
            await Health([Check("c", check)]).readiness()

    run(main())
    assert seen == [None]


def test_health_is_usable_from_one_event_loop_after_another() -> None:
    probe = Probe()
    health = Health([Check("db", probe)], cache_ttl=0)
    assert run(health.readiness()).ok
    assert run(health.readiness()).ok
    assert probe.calls == 2


# -- breakers ------------------------------------------------------------------------------


def test_an_open_breaker_of_a_critical_dependency_fails_readiness() -> None:
    payment = dependency("payment", Criticality.CRITICAL)
    health = Health(dependencies=[payment])
    assert run(health.readiness()).ok
    payment.breaker.force_open()  # type: ignore[union-attr]
    report = run(health.readiness())
    assert report.status == "failed"
    assert report.to_dict()["breakers"] == {
        "payment": {"status": "open", "state": "forced_open", "required": True}
    }
    payment.breaker.reset()  # type: ignore[union-attr]
    assert run(health.readiness()).ok


def test_an_open_breaker_trips_readiness_through_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "payment", minimum_calls=2, open_duration=30, clock=clock, listeners=Listeners()
    )
    payment = Dependency("payment", breaker=breaker, listeners=Listeners())

    async def down() -> None:
        raise ConnectionError

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(Exception, match="payment"):
                await payment.call(down)

    run(main())
    assert breaker.state is State.OPEN
    assert run(Health(dependencies=[payment]).readiness()).status == "failed"


def test_an_open_breaker_of_a_degradable_dependency_is_reported_but_does_not_count() -> None:
    recommendations = dependency("recommendations", Criticality.DEGRADABLE)
    recommendations.breaker.force_open()  # type: ignore[union-attr]
    report = run(Health(dependencies=[recommendations]).readiness())
    assert report.ok
    assert report.to_dict()["breakers"] == {
        "recommendations": {"status": "open", "state": "forced_open", "required": False}
    }


def test_a_shadow_breaker_never_counts() -> None:
    payment = dependency("payment", Criticality.CRITICAL, shadow=True)
    payment.breaker.force_open()  # type: ignore[union-attr]
    report = run(Health(dependencies=[payment]).readiness())
    assert report.ok
    assert report.to_dict()["breakers"]["payment"] == {
        "status": "ok",
        "state": "forced_open",
        "required": True,
        "shadow": True,
    }


def test_breakers_are_read_fresh_while_checks_are_cached(clock: FakeClock) -> None:
    payment = dependency("payment", Criticality.CRITICAL)
    probe = Probe()
    health = Health([Check("db", probe)], dependencies=[payment], cache_ttl=60, clock=clock)
    assert run(health.readiness()).ok
    payment.breaker.force_open()  # type: ignore[union-attr]
    assert run(health.readiness()).status == "failed"
    assert probe.calls == 1


def test_dependencies_without_a_breaker_are_left_out() -> None:
    plain = Dependency("plain", listeners=Listeners())
    assert "breakers" not in run(Health(dependencies=[plain]).readiness()).to_dict()


def test_a_generator_of_dependencies_is_kept() -> None:
    payment = dependency("payment", Criticality.CRITICAL)
    health = Health(dependencies=(d for d in [payment]))
    payment.breaker.force_open()  # type: ignore[union-attr]
    assert run(health.readiness()).status == "failed"
    assert run(health.readiness()).status == "failed"


# -- secrecy ---------------------------------------------------------------------------------

DSN = "postgresql://admin:s3cr3t-pw@db-7.internal.example:5432/orders"


class OperationalError(Exception):
    """Like a driver's error: its text names the host, the user and the DSN."""


def leaky() -> Probe:
    return Probe(
        error=OperationalError(
            f'connection to server at "db-7.internal.example" (10.1.2.3) failed: '
            f'password authentication failed for user "admin" ({DSN})'
        )
    )


def test_details_are_hidden_by_default() -> None:
    report = run(Health([Check("db", leaky())]).readiness())
    text = json.dumps(report.to_dict())
    for secret in (
        "s3cr3t-pw",
        "db-7.internal.example",
        "10.1.2.3",
        "admin",
        "password",
        "OperationalError",
    ):
        assert secret not in text
    assert report.checks[0].detail is None


def test_details_only_when_asked_for() -> None:
    report = run(Health([Check("db", leaky())], expose_details=True).readiness())
    detail = report.to_dict()["checks"]["db"]["detail"]
    assert detail.startswith("OperationalError: connection to server")


def test_a_timeout_has_no_detail_even_when_exposed() -> None:
    report = run(
        Health([Check("db", Probe(sleep=5), timeout=0.01)], expose_details=True).readiness()
    )
    assert "detail" not in report.to_dict()["checks"]["db"]


# -- draining and startup ------------------------------------------------------------------------


def test_draining_fails_readiness_at_once_and_leaves_liveness_alone() -> None:
    probe = Probe()
    health = Health([Check("db", probe)])
    health.mark_draining()
    assert health.draining
    report = run(health.readiness())
    assert report.to_dict() == {"status": "failed", "draining": True, "checks": {}}
    assert probe.calls == 0
    assert health.liveness().ok


def test_draining_that_begins_during_an_evaluation_wins() -> None:
    health: Health

    async def check() -> None:
        health.mark_draining()

    health = Health([Check("db", check)])
    assert run(health.readiness()).draining


def test_startup_latches_once_passed() -> None:
    probe = Probe(error=ConnectionError())
    health = Health([Check("db", probe)], cache_ttl=0)
    assert run(health.startup()).status == "failed"
    probe.error = None
    assert run(health.startup()).ok
    probe.error = ConnectionError()
    assert run(health.startup()).ok
    assert run(health.readiness()).status == "failed"
    assert probe.calls == 3  # the latched startup ran nothing


# -- shutdown and configuration -------------------------------------------------------------------


def test_aclose_cancels_a_hung_call() -> None:
    hung = Probe(sleep=10)

    async def main() -> None:
        health = Health([Check("db", hung, timeout=0.01)])
        await health.readiness()
        await health.aclose()

    run(main())
    assert hung.cancelled == 1


def test_aclose_cancels_an_evaluation_in_flight() -> None:
    hung = Probe(sleep=10)

    async def main() -> None:
        health = Health([Check("db", hung, timeout=10)])
        probe = asyncio.create_task(health.readiness())
        await asyncio.sleep(0.01)
        await health.aclose()
        with pytest.raises(asyncio.CancelledError):
            await probe

    run(main())
    assert hung.cancelled == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Check("", Probe()), "name must be a non-empty string"),
        (lambda: Check("c", "not callable"), "fn must be an async callable"),  # type: ignore[arg-type]
        (lambda: Check("c", Probe(), timeout=0), "timeout must be a finite number of seconds > 0"),
        (lambda: Check("c", Probe(), timeout=float("nan")), "timeout must be"),
        (lambda: Health([Check("c", Probe()), Check("c", Probe())]), "unique, got 'c' twice"),
        (lambda: Health(["c"]), "checks must hold Check objects"),  # type: ignore[list-item]
        (lambda: Health(cache_ttl=-1), "cache_ttl must be"),
        (lambda: Health(dependencies=42), "dependencies must be an iterable"),  # type: ignore[arg-type]
    ],
)
def test_bad_configuration(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_timedelta_timeout() -> None:
    assert Check("c", Probe(), timeout=timedelta(milliseconds=250)).timeout == 0.25


def test_repr() -> None:
    assert repr(Health([Check("db", Probe())], cache_ttl=1)) == "<Health checks=[db] cache_ttl=1>"
