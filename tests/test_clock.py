"""The clocks: the real monotonic one, and FakeClock, which every time-dependent test relies on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from seawall._clock import MONOTONIC, Clock, MonotonicClock
from seawall.testing import FakeClock


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(MONOTONIC, Clock)
    assert isinstance(FakeClock(), Clock)


def test_the_real_clock_is_time_monotonic() -> None:
    before = time.monotonic()
    reading = MonotonicClock().monotonic()
    assert before <= reading <= time.monotonic()


def test_the_real_clock_sleeps_for_real_but_briefly() -> None:
    start = time.monotonic()
    MONOTONIC.sleep(0.01)
    asyncio.run(MONOTONIC.async_sleep(0.01))
    assert time.monotonic() - start >= 0.02


def test_fake_time_moves_only_when_told() -> None:
    clock = FakeClock(start=100.0)
    assert clock.monotonic() == 100.0
    time.sleep(0.01)
    assert clock.monotonic() == 100.0
    clock.advance(2.5)
    assert clock.monotonic() == 102.5


def test_fake_time_never_goes_backwards() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="never goes backwards"):
        clock.advance(-1)
    assert clock.monotonic() == 0.0


def test_fake_sleeps_advance_at_once_and_are_recorded() -> None:
    clock = FakeClock()
    start = time.monotonic()
    clock.sleep(30)
    clock.sleep(-1)  # a negative sleep is recorded, and moves nothing
    assert clock.monotonic() == 30
    assert clock.sleeps == [30, -1]
    assert time.monotonic() - start < 1.0  # nothing waited for real


def test_a_fake_async_sleep_yields_to_other_tasks() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def sleeper() -> None:
        order.append("sleeping")
        await clock.async_sleep(60)
        order.append("awake")

    async def other() -> None:
        order.append("other ran")

    async def main() -> None:
        await asyncio.gather(sleeper(), other())

    asyncio.run(main())
    assert order == ["sleeping", "other ran", "awake"]
    assert clock.monotonic() == 60


def test_advances_from_many_threads_all_count() -> None:
    clock = FakeClock()

    def tick() -> None:
        for _ in range(1000):
            clock.advance(0.001)

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert clock.monotonic() == pytest.approx(8.0)
