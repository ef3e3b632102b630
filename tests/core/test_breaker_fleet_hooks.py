"""The hooks a store shared by replicas uses: fleet open/close, probe gate, lifetime counts."""

from __future__ import annotations

import pytest

from seawall import CircuitBreaker, CircuitOpenError, CountWindow, State, TimeWindow
from seawall.events import Listeners, StateChanged
from seawall.testing import FakeClock


class Boom(Exception):
    pass


def make(clock: FakeClock, **kw: object) -> CircuitBreaker:
    options: dict[str, object] = {
        "window": CountWindow(10),
        "minimum_calls": 4,
        "open_duration": 10.0,
    }
    options.update(kw)
    return CircuitBreaker("pay", clock=clock, listeners=Listeners(), **options)  # type: ignore[arg-type]


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom), b:
            raise Boom


@pytest.mark.parametrize("window", [CountWindow(10), TimeWindow(60)])
def test_lifetime_counts_never_reset(clock: FakeClock, window: object) -> None:
    b = make(clock, window=window)
    b.call(lambda: None)
    fail(b, 3)  # 3 of 4 failed: opens
    clock.advance(10)
    b.call(lambda: None)
    b.call(lambda: None)  # closes: a fresh window
    assert b.metrics.calls == 0
    # The window's calls only: probes are decided by the probing replica, not counted.
    assert b._core.lifetime_counts() == (4, 3, 0)


def test_fleet_open_and_close_with_observers(clock: FakeClock) -> None:
    b = make(clock)
    seen: list[StateChanged] = []
    remove = b._core.add_observer(seen.append)
    assert b._core.fleet_open(until=25.0)
    assert b.state is State.OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    assert info.value.retry_after == pytest.approx(25.0)
    assert not b._core.fleet_open(until=40.0)  # already open
    assert b._core.fleet_close()
    assert b.state is State.CLOSED
    assert [(e.old, e.new, e.reason) for e in seen] == [
        (State.CLOSED, State.OPEN, "opened by the fleet"),
        (State.OPEN, State.CLOSED, "closed by the fleet"),
    ]
    remove()
    fail(b, 4)
    assert len(seen) == 2
    assert not b._core.fleet_open(until=clock.monotonic() - 1)  # already past


def test_operator_states_ignore_the_fleet(clock: FakeClock) -> None:
    b = make(clock)
    b.disable()
    assert not b._core.fleet_open(until=100.0)
    assert b.state is State.DISABLED
    b.force_open()
    assert not b._core.fleet_close()
    assert b.state is State.FORCED_OPEN


def test_probe_gate_stops_this_replicas_probes(clock: FakeClock) -> None:
    b = make(clock, half_open_calls=1)
    fail(b, 4)
    clock.advance(10)
    b._core.set_probe_gate(False)  # another replica holds the probe lease
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)
    assert b.state is State.HALF_OPEN
    b._core.set_probe_gate(True)
    b.call(lambda: None)
    assert b.state is State.CLOSED


def test_verdict_applies_the_breakers_own_thresholds(clock: FakeClock) -> None:
    core = make(clock, failure_rate_threshold=0.5, slow_call_rate_threshold=0.8)._core
    assert core.verdict(3, 3, 0) is None  # below minimum_calls
    assert core.verdict(10, 5, 0) == "failure rate"
    assert core.verdict(10, 4, 8) == "slow-call rate"
    assert core.verdict(10, 4, 7) is None


def test_an_observer_that_raises_is_logged_and_the_call_goes_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    b = make(clock)

    def broken(event: StateChanged) -> None:
        raise RuntimeError("store down")

    b._core.add_observer(broken)
    fail(b, 4)
    assert b.state is State.OPEN
    assert "observer" in caplog.text
