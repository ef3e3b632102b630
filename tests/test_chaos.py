"""Fault injection: decisions follow the configured rates, and in-process calls obey them."""

from __future__ import annotations

import asyncio
import itertools
import random
from email.utils import parsedate_to_datetime

import pytest

from seawall import ConfigError, transient
from seawall.chaos import Action, Chaos, Fault, InjectedFault


def test_no_fault_passes_every_call() -> None:
    chaos = Chaos()
    assert {chaos.decide().action for _ in range(100)} == {Action.PASS}
    assert chaos.counts[Action.PASS] == 100


def test_rates_are_honoured_over_many_draws() -> None:
    rng = random.Random(7)
    chaos = Chaos(Fault(error_rate=0.3, hang_rate=0.1, drop_rate=0.05), random=rng.random)
    for _ in range(20_000):
        chaos.decide()
    counts = chaos.counts
    assert abs(counts[Action.FAIL] / 20_000 - 0.3) < 0.02
    assert abs(counts[Action.HANG] / 20_000 - 0.1) < 0.01
    assert abs(counts[Action.DROP] / 20_000 - 0.05) < 0.01
    assert counts[Action.LOSE_RESPONSE] == 0


def test_latency_and_jitter() -> None:
    values = itertools.cycle([0.0, 0.5, 0.999])
    chaos = Chaos(Fault(latency=0.2, jitter=0.1), random=lambda: next(values))
    delays = [chaos.decide().delay for _ in range(3)]
    assert delays[0] == pytest.approx(0.2)
    assert min(delays) >= 0.2
    assert max(delays) <= 0.3


def test_failures_carry_status_and_retry_after_in_seconds_or_as_a_date() -> None:
    chaos = Chaos(Fault(error_rate=1.0, status=429, retry_after=3))
    d = chaos.decide()
    assert (d.action, d.status, d.headers) == (Action.FAIL, 429, {"Retry-After": "3"})
    chaos.set(retry_after_as_date=True)
    date = parsedate_to_datetime(chaos.decide().headers["Retry-After"])
    assert date.tzinfo is not None


def test_set_changes_fields_and_clear_removes_the_fault() -> None:
    chaos = Chaos()
    chaos.set(latency=1.0)
    assert chaos.fault.latency == 1.0
    chaos.set(error_rate=0.5)
    assert (chaos.fault.latency, chaos.fault.error_rate) == (1.0, 0.5)
    chaos.clear()
    assert chaos.fault == Fault()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"error_rate": 1.5}, "error_rate must be in [0, 1], got 1.5"),
        ({"latency": -1}, "latency must be a finite number of seconds >= 0, got -1"),
        ({"status": 700}, "status must be an HTTP status (100-599), got 700"),
        ({"error_rate": 0.7, "hang_rate": 0.5}, "the rates add up to more than 1"),
        ({"latncy": 1}, "unknown fault field(s) ['latncy']"),
        ({"latency": "slow"}, "latency must be a finite number"),
    ],
)
def test_bad_faults_are_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Fault.from_mapping(data)
    assert message in str(info.value)


def test_round_trip_through_a_mapping() -> None:
    fault = Fault(latency=0.5, error_rate=0.2, status=429, retry_after=2.0)
    assert Fault.from_mapping(fault.to_mapping()) == fault


def test_in_process_calls_obey_the_fault() -> None:
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        return "done"

    async def main() -> None:
        chaos = Chaos(Fault(error_rate=1.0, status=503, retry_after=2))
        with pytest.raises(InjectedFault) as info:
            await chaos.call_async(work)
        assert (info.value.status_code, info.value.retry_after) == (503, 2.0)
        assert transient(info.value)
        assert calls == 0
        chaos.set(Fault(lose_response_rate=1.0))
        with pytest.raises(ConnectionResetError):
            await chaos.call_async(work)
        assert calls == 1  # the work was done; only the answer was lost
        chaos.set(Fault(hang_rate=1.0))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await chaos.call_async(work)
        chaos.clear()
        assert await chaos.call_async(work) == "done"

    asyncio.run(main())


def test_sync_calls_obey_the_fault() -> None:
    chaos = Chaos(Fault(drop_rate=1.0))
    with pytest.raises(ConnectionResetError):
        chaos.call(lambda: 1)
    chaos.clear()
    assert chaos.call(lambda: 2) == 2


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
def test_an_injected_fault_keeps_its_retry_after_in_either_form(as_date: bool) -> None:
    """In process the wait survives an HTTP-date Retry-After too (whole seconds: up to 1 s less)."""
    chaos = Chaos(Fault(error_rate=1.0, status=429, retry_after=30, retry_after_as_date=as_date))
    with pytest.raises(InjectedFault) as info:
        chaos.call(lambda: None)
    retry_after = info.value.retry_after
    assert retry_after is not None
    assert 28.0 <= retry_after <= 30.0 if as_date else retry_after == 30.0
