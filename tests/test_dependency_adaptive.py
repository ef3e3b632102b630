"""A Dependency with an adaptive limit and a throttle: order, outcomes, permits.

Order inside a Dependency, outermost first: retry -> throttle -> breaker ->
adaptive limit -> timeout -> fn. These tests drive the sync and async paths
with real tasks and the injected fake clock.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from seawall import (
    AdaptiveLimit,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    Dependency,
    DependencyUnavailable,
    LimitExceededError,
    Retry,
    Throttle,
    ThrottledError,
)
from seawall.core.limit import SampleWindowConfig
from seawall.events import Listeners
from seawall.testing import FakeClock

EACH_CALL = SampleWindowConfig(min_time=1e-9, max_time=1e-9, min_samples=1, min_rtt=0.0)


class Status(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status_code = status


def limit_of(clock: FakeClock, **options: object) -> AdaptiveLimit:
    defaults: dict[str, object] = {"initial": 4, "min": 1, "max": 10, "timeout": 1.0}
    return AdaptiveLimit(
        "dep",
        algorithm="aimd",
        window=EACH_CALL,
        clock=clock,
        listeners=Listeners(),
        **{**defaults, **options},  # type: ignore[arg-type]
    )


def test_the_limit_refuses_as_unavailable_and_is_never_retried() -> None:
    clock = FakeClock()
    limit = limit_of(clock, initial=1, max=1)
    calls = 0

    async def main() -> None:
        nonlocal calls
        dep = Dependency(
            "dep", bulkhead=limit, retry=Retry(attempts=3), clock=clock, listeners=Listeners()
        )
        gate = asyncio.Event()

        async def hold() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "ok"

        first = asyncio.create_task(dep.call(hold))
        await asyncio.sleep(0)
        with pytest.raises(DependencyUnavailable) as caught:
            await dep.call(hold)
        assert isinstance(caught.value.cause, LimitExceededError)
        gate.set()
        assert await first == "ok"

    asyncio.run(main())
    assert calls == 1  # the refusal was not retried
    assert limit.in_flight == 0
    assert limit.rejected == 1


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_the_limit_learns_from_each_attempt(mode: str) -> None:
    clock = FakeClock()
    limit = limit_of(clock, initial=2)
    dep = Dependency("dep", bulkhead=limit, clock=clock, listeners=Listeners())
    assert dep.bulkhead is limit
    assert dep.limit is limit

    def slow() -> str:
        clock.advance(2.0)  # over the AIMD timeout of 1 s
        return "late"

    def refused() -> str:
        clock.advance(0.1)
        raise Status(503)

    def broken() -> str:
        clock.advance(0.1)
        raise Status(404)

    async def run(fn: object) -> object:
        async def wrapped() -> object:
            return fn()  # type: ignore[operator]

        return await dep.call(wrapped)

    def call(fn: object) -> object:
        if mode == "sync":
            return dep.call_sync(fn)  # type: ignore[arg-type]
        return asyncio.run(run(fn))

    assert call(slow) == "late"
    assert limit.limit == 1  # 2 * 0.9: slower than the timeout
    assert call(lambda: clock.advance(0.1)) is None
    assert limit.limit == 2  # in flight 1 of 1: grows
    with pytest.raises(DependencyUnavailable):
        call(refused)
    assert limit.limit == 1  # a 503 is a drop
    with pytest.raises(Status):
        call(broken)
    assert limit.limit == 1  # a 404 says nothing of the load
    assert limit.in_flight == 0


def test_a_timed_out_attempt_is_a_drop_and_gives_its_permit_back() -> None:
    limit = AdaptiveLimit(
        "dep", algorithm="aimd", initial=5, timeout=0.005, window=EACH_CALL, listeners=Listeners()
    )
    dep = Dependency("dep", bulkhead=limit, timeout=0.01, listeners=Listeners())

    async def hang() -> None:
        await asyncio.sleep(10)

    with pytest.raises(DependencyUnavailable) as caught:
        asyncio.run(dep.call(hang))
    assert isinstance(caught.value.cause, TimeoutError)
    assert limit.limit == 4
    assert limit.in_flight == 0


def test_cancelled_calls_leak_no_permit_and_no_throttle_request() -> None:
    limit = AdaptiveLimit("dep", initial=10, listeners=Listeners())
    throttle = Throttle("dep", listeners=Listeners())
    dep = Dependency("dep", bulkhead=limit, throttle=throttle, timeout=30.0, listeners=Listeners())

    async def main() -> None:
        tasks = [asyncio.create_task(dep.call(asyncio.sleep, 3600)) for _ in range(8)]
        await asyncio.sleep(0.01)
        assert limit.in_flight == 8
        assert throttle.requests == 0  # counted when they end
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert limit.in_flight == 0
    assert (throttle.requests, throttle.accepts) == (0, 0)
    assert limit.limit == 10


def test_the_throttle_sheds_a_share_as_the_backend_refuses_a_share() -> None:
    clock = FakeClock()
    throttle = Throttle(
        "dep",
        k=1.5,
        min_requests=0,
        clock=clock,
        random=random.Random(7).random,
        listeners=Listeners(),
    )
    dep = Dependency("dep", throttle=throttle, clock=clock, listeners=Listeners())
    reached = 0
    accepted = 0
    shed = 0
    free_at = 0.0

    def backend() -> str:
        # A backend that serves one call per 30 ms and refuses the rest: a
        # third of the 100 calls a second offered.
        nonlocal reached, accepted, free_at
        reached += 1
        if clock.monotonic() < free_at:
            raise Status(503)
        accepted += 1
        free_at = clock.monotonic() + 0.03
        return "ok"

    for _ in range(600):
        try:
            dep.call_sync(backend)
        except DependencyUnavailable as exc:
            if isinstance(exc.cause, ThrottledError):
                shed += 1
        clock.advance(0.01)
    # What reaches the backend follows what it accepts: about k times that
    # (p = (requests - k * accepts) / (requests + 1) makes sent = k * accepts).
    assert reached + shed == 600
    assert 1.5 * 0.8 < reached / accepted < 1.5 * 1.2
    assert 0.3 < shed / 600 < 0.9


def test_calls_an_open_breaker_refuses_do_not_count_in_the_throttle() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "dep",
        window=CountWindow(4),
        minimum_calls=4,
        open_duration=60.0,
        clock=clock,
        listeners=Listeners(),
    )
    throttle = Throttle("dep", clock=clock, random=lambda: 0.9999, listeners=Listeners())
    dep = Dependency("dep", breaker=breaker, throttle=throttle, clock=clock, listeners=Listeners())

    def down() -> None:
        raise Status(503)

    causes = []
    for _ in range(10):
        with pytest.raises(DependencyUnavailable) as caught:
            dep.call_sync(down)
        causes.append(type(caught.value.cause))
    assert causes.count(CircuitOpenError) == 6
    # Only the four calls that reached the backend are in the throttle's window.
    assert (throttle.requests, throttle.accepts) == (4, 0)


def test_the_breaker_is_in_charge_of_a_whole_outage_and_the_throttle_forgets_it() -> None:
    """Half-open probes are never shed, and once they close the breaker the throttle starts afresh."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "dep",
        window=CountWindow(10),
        minimum_calls=10,
        failure_rate_threshold=0.9,
        open_duration=1.0,
        half_open_calls=1,
        clock=clock,
        listeners=Listeners(),
    )
    # A draw of 0 sheds whenever p > 0: only the breaker's state lets a call by.
    throttle = Throttle("dep", clock=clock, random=lambda: 0.0, listeners=Listeners())
    dep = Dependency("dep", breaker=breaker, throttle=throttle, clock=clock, listeners=Listeners())
    down = True

    def payment() -> str:
        if down:
            raise Status(503)
        return "ok"

    for _ in range(10):  # the outage: ten refusals open the breaker
        with pytest.raises(DependencyUnavailable):
            dep.call_sync(payment)
    assert throttle.probability > 0.9
    down = False
    clock.advance(1.0)  # half-open: the probe goes, though the throttle would shed it
    assert dep.call_sync(payment) == "ok"
    assert breaker.state.value == "closed"
    assert (throttle.requests, throttle.probability) == (0, 0.0)  # the outage is forgotten
    assert [dep.call_sync(payment) for _ in range(5)] == ["ok"] * 5
