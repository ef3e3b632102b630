"""The simulators' capacity model: workers, a FIFO queue, and wasted work, in virtual time."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from examples.orders.capacity import (
    FORGET_BATCH,
    KEEP_SECONDS,
    Capacity,
    Gone,
    Level,
    Refused,
    Workers,
)
from hypothesis import given, settings
from hypothesis import strategies as st


class VirtualTime:
    """A discrete-event clock: sleeps wake in time order, and time jumps between them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), future))
        await future

    async def run(self, until: float) -> None:
        """Let every task run; wake sleepers in time order up to ``until``.

        Time stops at ``until`` while a sleeper is left, else at the last wake-up.
        """
        while True:
            for _ in range(20):  # let woken tasks reach their next sleep
                await asyncio.sleep(0)
            live = [t for t in self._timers if not t[2].done()]
            heapq.heapify(live)
            self._timers = live
            if not live:
                return
            if live[0][0] > until:
                self.now = max(self.now, until)
                return
            at, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, at)
            future.set_result(None)


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop (the suite has no async plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def workers(capacity: Capacity, clock: VirtualTime) -> Workers:
    return Workers(capacity, wall=clock.wall, sleep=clock.sleep, random=lambda: 0.5)


def total(figures: dict[str, Any], name: str) -> float:
    return sum(v for _, v in figures[name])


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


@in_loop
async def test_requests_beyond_the_workers_wait_in_arrival_order() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=2, service_time=1.0), clock)
    finished: list[int] = []

    async def one(n: int) -> None:
        await pool.serve(0.0, asyncio.Event())
        finished.append(n)

    tasks = [spawn(one(n)) for n in range(5)]
    await clock.run(until=clock.now + 0.5)
    assert (pool.busy.value, pool.depth) == (2, 3)
    await clock.run(until=clock.now + 10)
    await asyncio.gather(*tasks)
    assert finished == [0, 1, 2, 3, 4]  # first in, first out
    assert clock.now == pytest.approx(1003.0)  # 2 + 2 + 1 at a time
    figures = pool.figures()
    assert total(figures, "completed") == 5
    assert total(figures, "wasted") == 0
    # Three seconds of work at two workers: two busy, then one, as time averages.
    busy = dict(figures["busy"])
    assert busy[1000] == pytest.approx(2.0)
    assert busy[1001] == pytest.approx(2.0)
    assert busy[1002] == pytest.approx(1.0)
    assert dict(figures["queue_peak"])[1000] == 3


@in_loop
async def test_a_caller_that_leaves_still_holds_its_worker_and_the_work_is_wasted() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=2.0), clock)
    gone = asyncio.Event()
    first = spawn(pool.serve(0.0, gone))
    second = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 0.5)
    gone.set()  # its caller timed out; the server does not notice
    await clock.run(until=clock.now + 1.0)
    assert pool.busy.value == 1
    assert pool.depth == 1  # the second still waits behind work nobody wants
    await clock.run(until=clock.now + 10)
    assert await first is False
    assert await second is True
    figures = pool.figures()
    assert total(figures, "wasted") == 1
    assert total(figures, "wasted_seconds") == pytest.approx(2.0)
    assert total(figures, "completed") == 1
    assert clock.now == pytest.approx(1004.0)  # the second waited out the wasted 2 s


@in_loop
async def test_noticing_a_disconnect_frees_the_worker_and_the_queue_slot() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=2.0, notice_disconnect=True), clock)
    working, queued = asyncio.Event(), asyncio.Event()
    first = spawn(pool.serve(0.0, working))
    second = spawn(pool.serve(0.0, queued))
    third = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 0.5)
    queued.set()
    working.set()
    start = clock.now
    await clock.run(until=clock.now + 10)
    for task in (first, second):
        with pytest.raises(Gone):
            await task
    assert await third is True
    figures = pool.figures()
    assert total(figures, "abandoned") == 2
    assert total(figures, "completed") == 1
    assert total(figures, "wasted") == 0
    # The third started as soon as the others left, not after their work.
    assert dict(figures["completed"]) == {int(start + 2.0): 1}
    assert (pool.busy.value, pool.depth) == (0, 0)


@in_loop
async def test_scale_contention_and_extra_lengthen_the_work() -> None:
    clock = VirtualTime()
    capacity = Capacity(
        workers=1, service_time=1.0, jitter=1.0, scale=2.0, contention=0.5, max_slowdown=2.0
    )
    pool = workers(capacity, clock)
    assert capacity.mean_service_time == pytest.approx(3.0)  # (1 + 1/2) x 2
    assert capacity.throughput == pytest.approx(1 / 3)
    tasks = [spawn(pool.serve(0.25, asyncio.Event())) for _ in range(4)]
    await clock.run(until=clock.now + 100)
    await asyncio.gather(*tasks)
    # Each: (1 + 0.5 x 1.0 jitter) x 2 scale = 3 s, times the contention of the requests
    # still waiting when it starts, + 0.25 s of the fault's latency. The first starts
    # alone (x1); then 2 wait (x2, the cap), 1 (x1.5), none (x1).
    assert clock.now - 1000 == pytest.approx(3.25 + 6.25 + 4.75 + 3.25)


@in_loop
async def test_a_capacity_change_takes_effect_for_work_not_yet_started() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=1.0), clock)
    tasks = [spawn(pool.serve(0.0, asyncio.Event())) for _ in range(3)]
    await clock.run(until=clock.now + 0.5)
    pool.configure(Capacity(workers=3, service_time=1.0, scale=4.0))
    await clock.run(until=clock.now + 0.1)
    assert (pool.busy.value, pool.depth) == (3, 0)  # more workers start the queued at once
    await clock.run(until=clock.now + 100)
    await asyncio.gather(*tasks)
    # The first kept its 1 s; the two started after the change take 4 s.
    assert clock.now == pytest.approx(1000 + 0.5 + 4.0)


@in_loop
async def test_zero_workers_stall_the_server_until_it_gets_them_back() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=0, service_time=1.0), clock)
    task = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 30)
    assert not task.done()
    assert pool.depth == 1
    pool.configure(Capacity(workers=1, service_time=1.0))
    await clock.run(until=clock.now + 30)
    assert await task is True


@in_loop
async def test_a_full_queue_refuses_and_a_flush_empties_it() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=1.0, queue_limit=1), clock)
    working = spawn(pool.serve(0.0, asyncio.Event()))
    queued = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 0.1)
    with pytest.raises(Refused):
        await pool.serve(0.0, asyncio.Event())
    assert pool.flush() == 1
    with pytest.raises(Refused):
        await queued
    await clock.run(until=clock.now + 10)
    assert await working is True
    assert (pool.busy.value, pool.depth, pool.queued.value) == (0, 0, 0)
    assert total(pool.figures(), "refused") == 2  # one at the limit, one flushed


@in_loop
async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=1.0), clock)
    first = spawn(pool.serve(0.0, asyncio.Event()))
    second = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 0.1)
    second.cancel()
    await clock.run(until=clock.now + 10)
    assert await first is True
    assert second.cancelled()
    assert (pool.busy.value, pool.depth) == (0, 0)
    assert total(pool.figures(), "abandoned") == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"workers": -1}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"workers": True}, "workers"),
        ({"service_time": -0.1}, "service_time"),
        ({"jitter": float("nan")}, "jitter"),
        ({"scale": 0}, "scale"),
        ({"contention": "a"}, "contention"),
        ({"max_slowdown": 0.5}, "max_slowdown"),
        ({"queue_limit": -2}, "queue_limit"),
        ({"notice_disconnect": "yes"}, "notice_disconnect"),
        ({"speed": 2}, "speed"),
    ],
)
def test_bad_capacity_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Capacity().changed(changes)


def test_unlimited_capacity_has_no_throughput_figure() -> None:
    unlimited = Capacity(workers=None)
    assert not unlimited.limited
    assert unlimited.throughput is None
    assert unlimited.to_mapping()["throughput"] is None
    assert Capacity(workers=4, service_time=0.5).to_mapping()["throughput"] == 8.0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.sampled_from([1, -1])), max_size=30
    )
)
def test_level_means_and_peaks_match_a_sampled_model(steps: list[tuple[float, int]]) -> None:
    """Per second, the mean is the area under the step function; the peak its highest value."""
    now, value = 100.0, 0
    level = Level(now)
    changes = []
    for gap, step in steps:
        delta = 1 if value + step < 0 else step
        now += gap
        level.add(delta, now)
        value += delta
        changes.append((now, value))
    end = now + 1.5
    means, peaks = level.series(end)

    def at(t: float) -> int:
        v = 0
        for when, after in changes:
            if when <= t:
                v = after
        return v

    for second in range(100, int(end)):
        samples = [at(second + (k + 0.5) / 2000) for k in range(2000)]
        assert means.get(second, 0.0) == pytest.approx(sum(samples) / 2000, abs=0.01)
        # The peak, exactly: the level in force as the second begins, or any it steps to.
        highest = max([at(second), *(v for when, v in changes if second <= when < second + 1)])
        assert peaks.get(second, 0) == highest


@in_loop
async def test_a_reset_keeps_running_work_counted_and_the_pool_within_its_size() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=1.0), clock)
    running = spawn(pool.serve(0.0, asyncio.Event()))
    queued = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 0.5)
    assert pool.reset(Capacity(workers=1, service_time=1.0, scale=2.0)) == 1
    with pytest.raises(Refused):
        await queued
    late = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 0.1)
    assert pool.busy.value == 1  # the running one still holds the only worker
    assert pool.depth == 1
    await clock.run(until=clock.now + 10)
    assert await running is True
    assert await late is True
    figures = pool.figures()
    assert total(figures, "completed") == 2  # both counted after the reset
    assert total(figures, "refused") == 0  # the flushed one went with the old figures
    assert clock.now == pytest.approx(1000 + 1.0 + 2.0)  # the late one at the new scale


@in_loop
async def test_cancelling_a_request_that_notices_disconnects_frees_its_worker() -> None:
    clock = VirtualTime()
    pool = workers(Capacity(workers=1, service_time=5.0, notice_disconnect=True), clock)
    task = spawn(pool.serve(0.0, asyncio.Event()))
    await clock.run(until=clock.now + 1.0)
    task.cancel()
    await clock.run(until=clock.now + 0.1)
    assert task.cancelled()
    assert pool.busy.value == 0
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_a_wall_clock_jump_costs_at_most_the_seconds_kept() -> None:
    level = Level(0.0)
    level.add(1, 0.0)
    level.add(-1, 10_000_000.0)  # a year's jump, at one level
    means, peaks = level.series(10_000_000.0)
    assert len(means) <= KEEP_SECONDS + FORGET_BATCH + 1
    assert means[9_999_999] == 1.0
    assert peaks[9_999_999] == 1
