"""The breaker under real threads and real tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from seawall import CircuitBreaker, CircuitOpenError, CountWindow, State
from seawall.events import Listeners
from seawall.testing import FakeClock


class Boom(Exception):
    pass


def test_eight_threads_counts_exact() -> None:
    """8 threads x 2,500 calls: every success and failure is counted exactly once."""
    threads, per_thread, fail_every = 8, 2_500, 5
    total = threads * per_thread
    b = CircuitBreaker(
        "dep",
        window=CountWindow(total),
        minimum_calls=total,
        failure_rate_threshold=1.0,
        listeners=Listeners(),
    )
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait(timeout=10)
        for i in range(per_thread):
            try:
                with b:
                    if i % fail_every == 0:
                        raise Boom
            except Boom:
                pass

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    m = b.metrics
    assert m.calls == total
    assert m.failures == total // fail_every
    assert b.state is State.CLOSED


def test_eight_threads_open_the_circuit_exactly_once() -> None:
    """Concurrent failures race to open it; it opens once and rejects afterwards."""
    opened: list[object] = []
    listeners = Listeners()
    listeners.add(opened.append)
    b = CircuitBreaker(
        "dep",
        window=CountWindow(50),
        minimum_calls=50,
        open_duration=3600,
        listeners=listeners,
    )
    start = threading.Barrier(8)
    rejected = [0] * 8

    def work(k: int) -> None:
        start.wait(timeout=10)
        for _ in range(500):
            try:
                with b:
                    raise Boom
            except Boom:
                pass
            except CircuitOpenError:
                rejected[k] += 1

    pool = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    assert b.state is State.OPEN
    assert len(opened) == 1 + sum(rejected)  # one StateChanged, then rejections
    assert sum(rejected) >= 8 * 500 - 50 - 8  # at most the window and the racers got through


def test_lock_is_not_held_while_the_function_runs() -> None:
    """Eight threads are inside the protected function at the same moment."""
    b = CircuitBreaker("dep", listeners=Listeners())
    inside = threading.Barrier(8)

    @b
    def work() -> None:
        inside.wait(timeout=10)  # breaks (and fails the test) if calls were serialised

    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=run) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    assert errors == []
    assert b.metrics.calls == 8


def half_open(clock: FakeClock, probes: int) -> CircuitBreaker:
    b = CircuitBreaker(
        "dep",
        window=CountWindow(4),
        minimum_calls=4,
        open_duration=10,
        half_open_calls=probes,
        clock=clock,
        listeners=Listeners(),
    )
    for _ in range(4):
        with pytest.raises(Boom), b:
            raise Boom
    clock.advance(10)
    assert b.state is State.HALF_OPEN
    return b


def test_a_thousand_tasks_on_half_open_only_probes_get_through() -> None:
    """1,000 concurrent callers: exactly half_open_calls reach the function."""
    clock = FakeClock()
    b = half_open(clock, probes=3)
    reached = 0
    release = asyncio.Event()

    @b
    async def call() -> None:
        nonlocal reached
        reached += 1
        await release.wait()

    async def caller() -> str:
        try:
            await call()
        except CircuitOpenError:
            return "rejected"
        return "ok"

    async def main() -> list[str]:
        tasks = [asyncio.create_task(caller()) for _ in range(1000)]
        await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        assert reached == 3  # the probes are all in flight, the rest already rejected
        release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert reached == 3
    assert results.count("ok") == 3
    assert results.count("rejected") == 997
    assert b.state is State.CLOSED


@pytest.mark.parametrize("entry", ["decorator", "async with", "call_async"])
def test_a_cancelled_probe_frees_its_slot(entry: str) -> None:
    """Cancelling the only probe lets the next caller probe instead."""
    clock = FakeClock()
    b = half_open(clock, probes=1)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async def probe() -> None:
        if entry == "decorator":
            await b(hang)()
        elif entry == "async with":
            async with b:
                await hang()
        else:
            await b.call_async(hang)

    async def main() -> None:
        task = asyncio.create_task(probe())
        await asyncio.wait_for(started.wait(), timeout=5)
        with pytest.raises(CircuitOpenError):
            await b.call_async(asyncio.sleep, 0)  # the slot is taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert b.state is State.HALF_OPEN
        await b.call_async(asyncio.sleep, 0)  # the freed slot: this probe closes it

    asyncio.run(main())
    assert b.state is State.CLOSED


def test_with_blocks_in_interleaved_tasks_keep_their_own_permits() -> None:
    """Tasks interleaving `async with` on one breaker each report their own outcome."""
    clock = FakeClock()
    b = half_open(clock, probes=2)
    gate = asyncio.Event()

    async def probe(fails: bool) -> None:
        async with b:
            await gate.wait()
            if fails:
                raise Boom

    async def main() -> None:
        ok = asyncio.create_task(probe(fails=False))
        bad = asyncio.create_task(probe(fails=True))
        await asyncio.sleep(0)
        gate.set()
        await ok
        with pytest.raises(Boom):
            await bad

    asyncio.run(main())
    assert b.state is State.OPEN  # one probe failed: reopened, not closed
