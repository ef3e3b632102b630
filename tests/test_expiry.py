"""The shared timer behind a Dependency's own timeout (seawall._expiry), on real event loops.

Each test runs for tens of milliseconds of real time, under an outer
``asyncio.timeout`` so that a broken expiry fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from typing import Any

import pytest

from seawall import Bulkhead, CircuitBreaker, CountWindow, DeadlineExceeded, DependencyUnavailable
from seawall._expiry import DONE, FIRED, PENDING, STATE, Expiry
from seawall.dependency import Dependency
from seawall.events import Listeners


def dependency(timeout: float, **kw: Any) -> Dependency:
    return Dependency("pay", timeout=timeout, listeners=Listeners(), **kw)


async def hang() -> str:
    await asyncio.sleep(10)
    return "never"


async def quick() -> str:
    await asyncio.sleep(0)
    return "ok"


def test_hung_attempts_expire_and_quick_ones_pass_through_one_timer() -> None:
    b = CircuitBreaker("pay", window=CountWindow(500), minimum_calls=400, listeners=Listeners())
    dep = dependency(0.03, breaker=b)

    async def main() -> list[Any]:
        async with asyncio.timeout(5):
            calls = [dep.call(hang if i % 2 else quick) for i in range(200)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0::2] == ["ok"] * 100
    assert all(isinstance(r, DependencyUnavailable) for r in results[1::2])
    assert all(isinstance(r.cause, DeadlineExceeded) for r in results[1::2])
    assert (b.metrics.calls, b.metrics.failures) == (200, 100)  # expiries are failures
    assert dep._expiry is not None
    assert len(dep._expiry) == 0  # nothing left behind


def test_finished_attempts_do_not_pile_up() -> None:
    dep = dependency(5.0)

    async def main() -> int:
        for _ in range(1000):
            await dep.call(quick)
        assert dep._expiry is not None
        return len(dep._expiry)

    assert asyncio.run(main()) == 0


def test_a_pending_outer_cancellation_stays_a_cancellation() -> None:
    """Our timer fired, but somebody else also asked: their CancelledError wins."""
    dep = dependency(0.01)

    async def cancelled_twice() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # a second request arriving as ours is delivered
            raise
        return "never"

    async def main() -> None:
        async with asyncio.timeout(5):
            task = asyncio.create_task(dep.call(cancelled_twice))
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

    asyncio.run(main())


def test_an_outer_cancellation_before_expiry_is_not_a_timeout() -> None:
    dep = dependency(5.0)

    async def main() -> None:
        async with asyncio.timeout(5):
            task = asyncio.create_task(dep.call(hang))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert dep._expiry is not None
            assert len(dep._expiry) == 0

    asyncio.run(main())


def test_a_cancellation_swallowed_by_the_function_is_taken_back() -> None:
    """fn caught our cancellation and answered: its answer stands, the task is not cancelling."""
    dep = dependency(0.01)

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "late"
        return "never"

    async def main() -> int:
        async with asyncio.timeout(5):
            assert await dep.call(stubborn) == "late"
            task = asyncio.current_task()
            assert task is not None
            await asyncio.sleep(0.02)  # a leftover cancel request would land here
            return task.cancelling()

    assert asyncio.run(main()) == 0


def test_a_deadline_earlier_than_the_queued_ones_is_not_held_back() -> None:
    """Out of order (an attempt that waited for a permit): expired at its own time."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        expiry = Expiry(loop)
        late = asyncio.create_task(asyncio.sleep(10))
        early = asyncio.create_task(asyncio.sleep(10))
        start = loop.time()
        late_entry = expiry.start(start + 3.0, late)
        early_entry = expiry.start(start + 0.02, early)
        async with asyncio.timeout(5):
            with pytest.raises(asyncio.CancelledError):
                await early
        took = loop.time() - start
        assert early_entry[STATE] == FIRED
        assert late_entry[STATE] == PENDING
        expiry.finish(late_entry)
        assert late_entry[STATE] == DONE
        late.cancel()
        return took

    assert asyncio.run(main()) < 1.0


def test_a_wait_for_a_permit_counts_against_the_attempt() -> None:
    """The attempt's clock starts before its bulkhead wait, as with asyncio.Timeout."""
    dep = dependency(0.05, bulkhead=Bulkhead("pay", max_concurrent=1, max_wait=1.0))
    gate = asyncio.Event()

    async def holder() -> str:
        await gate.wait()
        return "held"

    async def main() -> list[Any]:
        async with asyncio.timeout(5):
            first = asyncio.create_task(dep.call(holder))
            await asyncio.sleep(0)
            second = asyncio.create_task(dep.call(quick))
            await asyncio.sleep(0.03)
            gate.set()  # second gets the permit with 20 ms of its 50 left
            return await asyncio.gather(first, second, return_exceptions=True)

    assert asyncio.run(main()) == ["held", "ok"]


def test_one_dependency_on_two_event_loops_at_once() -> None:
    """Each thread's loop gets its own timer; neither cancels the other's tasks."""
    dep = dependency(0.03)
    outcomes: dict[str, list[Any]] = {}

    def worker(name: str) -> None:
        async def main() -> list[Any]:
            async with asyncio.timeout(5):
                calls = []
                for i in range(60):
                    calls.append(dep.call(hang if i % 3 == 0 else quick))
                    if i % 10 == 0:
                        await asyncio.sleep(0.001)  # let the other thread swap the timer in
                return await asyncio.gather(*calls, return_exceptions=True)

        outcomes[name] = asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(outcomes) == ["a", "b"]
    for results in outcomes.values():
        for i, result in enumerate(results):
            if i % 3 == 0:
                assert isinstance(result, DependencyUnavailable), result
            else:
                assert result == "ok"


def test_a_finished_call_is_not_kept_alive_behind_a_running_one() -> None:
    """Entries behind a hung call wait in the queue; their tasks must not."""
    dep = dependency(5.0)

    async def main() -> None:
        async with asyncio.timeout(5):
            hung = asyncio.create_task(dep.call(hang))
            await asyncio.sleep(0)
            done = asyncio.create_task(dep.call(quick))
            assert await done == "ok"
            assert dep._expiry is not None
            assert len(dep._expiry) == 2  # the finished entry waits behind the hung one
            gone = weakref.ref(done)
            del done
            await asyncio.sleep(0)  # the loop drops its handle of the wake-up that ran
            gc.collect()
            assert gone() is None
            hung.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hung

    asyncio.run(main())
