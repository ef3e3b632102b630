"""Bulkhead (asyncio) and ThreadBulkhead (threads): capacity, queueing, refusals, and permits.

Every test uses real tasks or real threads. Waits that must expire use tens of
milliseconds of real time; everything else is ordered by the event loop (or by
barriers and events), not by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from seawall import bulkhead as bulkhead_module
from seawall.bulkhead import Bulkhead, BulkheadConfig, ThreadBulkhead
from seawall.errors import BulkheadFullError, ConfigError, RejectedError
from seawall.events import BulkheadRejected, Listeners
from seawall.testing import FakeClock, RecordingListener
from seawall.timeouts import deadline

if TYPE_CHECKING:
    from collections.abc import Callable


async def settle(rounds: int = 10) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize("cls", [Bulkhead, ThreadBulkhead])
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_concurrent": 0}, "max_concurrent must be an integer >= 1, got 0"),
        ({"max_concurrent": -3}, "max_concurrent must be an integer >= 1, got -3"),
        ({"max_concurrent": 2.5}, "max_concurrent must be an integer >= 1, got 2.5"),
        ({"max_concurrent": True}, "max_concurrent must be an integer >= 1, got True"),
        ({"max_concurrent": 1, "max_wait": -0.1}, "max_wait must be a finite number"),
        ({"max_concurrent": 1, "max_wait": float("inf")}, "got inf"),
        ({"max_concurrent": 1, "max_wait": float("nan")}, "got nan"),
        ({"max_concurrent": 1, "max_wait": "1"}, "max_wait must be a finite number"),
    ],
)
def test_bad_config_raises_config_error_naming_field_and_value(
    cls: type[Bulkhead], kwargs: dict[str, object], fragment: str
) -> None:
    """A bad option fails at construction with a ConfigError that names it and its value."""
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        cls("dep", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Bulkhead, ThreadBulkhead])
@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_name_raises_config_error(cls: type[Bulkhead], name: object) -> None:
    """An empty or non-string name is a ConfigError."""
    with pytest.raises(ConfigError, match="name must be a non-empty string"):
        cls(name, max_concurrent=1)  # type: ignore[arg-type]


def test_every_bad_field_is_reported_at_once() -> None:
    """The name and the numbers are all named in one message."""
    with pytest.raises(ConfigError) as info:
        Bulkhead("", max_concurrent=0, max_wait=-1)
    message = str(info.value)
    assert "name" in message
    assert "max_concurrent" in message
    assert "max_wait" in message


def test_config_is_exposed_and_timedelta_accepted() -> None:
    """max_wait may be a timedelta; the validated config is on .config."""
    bh = Bulkhead("dep", max_concurrent=3, max_wait=timedelta(milliseconds=250))
    assert bh.config == BulkheadConfig(max_concurrent=3, max_wait=0.25)
    assert bh.max_concurrent == 3
    assert bh.name == "dep"
    assert "dep" in repr(bh)
    assert "0/3" in repr(bh)


# -- Bulkhead (asyncio) ------------------------------------------------------------


def test_capacity_is_respected_exactly_under_contention() -> None:
    """200 tasks through a bulkhead of 5: at most 5 inside, and 5 reached."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=5, max_wait=10.0, listeners=Listeners())
        inside = 0
        peak = 0
        done = 0

        async def work(i: int) -> None:
            nonlocal inside, peak, done
            async with bh:
                inside += 1
                peak = max(peak, inside)
                assert bh.in_use <= 5
                for _ in range(i % 3 + 1):
                    await asyncio.sleep(0)
                inside -= 1
                done += 1

        await asyncio.gather(*(work(i) for i in range(200)))
        assert peak == 5
        assert done == 200
        assert bh.in_use == 0
        assert bh.available == 5
        assert bh.waiting == 0

    asyncio.run(main())


def test_waiters_are_served_in_arrival_order_without_barging() -> None:
    """A freed permit goes to the oldest waiter, never to a newcomer."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        await bh.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            async with bh:
                order.append(i)
                await asyncio.sleep(0)

        tasks = []
        for i in range(8):
            tasks.append(asyncio.create_task(waiter(i)))
            await settle(2)
        assert bh.waiting == 8
        bh.release()
        # The permit now belongs to waiter 0 even though it has not run yet.
        assert bh.in_use == 1
        assert not bh.try_acquire()
        await asyncio.gather(*tasks)
        assert order == list(range(8))
        assert bh.in_use == 0

    asyncio.run(main())


def test_in_use_and_available_follow_acquire_and_release() -> None:
    """in_use and available count held permits; try_acquire never waits."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=3, listeners=Listeners())
        assert (bh.in_use, bh.available) == (0, 3)
        await bh.acquire()
        assert bh.try_acquire()
        assert (bh.in_use, bh.available) == (2, 1)
        async with bh:
            assert (bh.in_use, bh.available) == (3, 0)
            assert not bh.try_acquire()
        bh.release()
        bh.release()
        assert (bh.in_use, bh.available) == (0, 3)
        with pytest.raises(RuntimeError, match="without a permit"):
            bh.release()

    asyncio.run(main())


def test_max_wait_zero_rejects_at_once_and_emits_event() -> None:
    """With max_wait=0 a full bulkhead refuses without waiting."""

    async def main() -> None:
        listeners = Listeners()
        rec = RecordingListener()
        listeners.add(rec)
        clock = FakeClock(start=7.0)
        bh = Bulkhead("payment", max_concurrent=2, clock=clock, listeners=listeners)
        async with bh, bh:
            with pytest.raises(BulkheadFullError) as info:
                async with bh:
                    pytest.fail("the body must not run")
        assert isinstance(info.value, RejectedError)
        assert info.value.name == "payment"
        assert info.value.max_concurrent == 2
        assert "payment" in str(info.value)
        assert rec.of_type(BulkheadRejected) == [
            BulkheadRejected(name="payment", at=7.0, max_concurrent=2, waited=0.0)
        ]
        assert bh.in_use == 0

    asyncio.run(main())


def test_max_wait_expiry_rejects_and_emits_event_with_waited_from_clock() -> None:
    """A waiter refused after max_wait reports the clock time it waited."""

    async def main() -> None:
        listeners = Listeners()
        rec = RecordingListener()
        listeners.add(rec)
        clock = FakeClock()
        bh = Bulkhead(
            "inventory", max_concurrent=1, max_wait=0.02, clock=clock, listeners=listeners
        )
        await bh.acquire()

        async def advance_while_waiting() -> None:
            await settle(2)
            clock.advance(5.0)

        advancing = asyncio.create_task(advance_while_waiting())
        t0 = time.monotonic()
        with pytest.raises(BulkheadFullError) as info:
            await bh.acquire()
        assert time.monotonic() - t0 >= 0.015
        await advancing
        assert info.value.name == "inventory"
        (event,) = rec.of_type(BulkheadRejected)
        assert event == BulkheadRejected(name="inventory", at=5.0, max_concurrent=1, waited=5.0)
        assert bh.waiting == 0
        assert bh.in_use == 1
        bh.release()
        assert bh.in_use == 0

    asyncio.run(main())


def test_waiter_gets_a_permit_freed_before_max_wait() -> None:
    """A waiter whose permit comes within max_wait runs its body."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=5.0, listeners=Listeners())
        ran = False

        async def holder() -> None:
            async with bh:
                await asyncio.sleep(0.005)

        async def waiter() -> None:
            nonlocal ran
            async with bh:
                ran = True

        await asyncio.gather(holder(), waiter())
        assert ran
        assert bh.in_use == 0

    asyncio.run(main())


def test_permit_released_on_return_and_exception() -> None:
    """Leaving the block normally or by an exception gives the permit back."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, listeners=Listeners())
        async with bh:
            assert bh.in_use == 1
        assert bh.in_use == 0
        with pytest.raises(KeyError):
            async with bh:
                raise KeyError("x")
        assert bh.in_use == 0

    asyncio.run(main())


def test_permit_released_when_a_holder_is_cancelled() -> None:
    """Cancelling a task inside the block frees its permit (to a waiter when there is one)."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        entered = asyncio.Event()
        second_ran = False

        async def holder() -> None:
            async with bh:
                entered.set()
                await asyncio.sleep(10)

        async def second() -> None:
            nonlocal second_ran
            async with bh:
                second_ran = True

        task = asyncio.create_task(holder())
        await entered.wait()
        waiting = asyncio.create_task(second())
        await settle(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await waiting
        assert second_ran
        assert bh.in_use == 0

    asyncio.run(main())


def test_cancelled_waiter_leaves_the_queue_without_a_permit() -> None:
    """A waiter cancelled while queued holds nothing, and the next release skips it."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        await bh.acquire()
        ran = False

        async def waiter() -> None:
            nonlocal ran
            async with bh:
                ran = True

        task = asyncio.create_task(waiter())
        await settle(2)
        assert bh.waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not ran
        assert bh.waiting == 0
        assert bh.in_use == 1
        bh.release()
        assert bh.in_use == 0

    asyncio.run(main())


def test_asyncio_timeout_around_the_body_releases_the_permit() -> None:
    """A timeout that fires inside the block frees the permit."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, listeners=Listeners())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01), bh:
                await asyncio.sleep(10)
        assert bh.in_use == 0

    asyncio.run(main())


def test_asyncio_timeout_while_waiting_leaves_no_waiter_and_no_permit() -> None:
    """A timeout that fires while queued takes nothing from the bulkhead."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        await bh.acquire()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01), bh:
                pytest.fail("the body must not run")
        assert bh.waiting == 0
        assert bh.in_use == 1
        bh.release()
        assert bh.in_use == 0

    asyncio.run(main())


# The race of the issue: the permit is handed to a waiter (its future resolved),
# and in the same loop iteration, before the waiter runs, the waiter is cancelled.
# Python 3.11's asyncio.wait_for around Semaphore.acquire() can swallow this
# cancellation and run the body, or lose the permit.


@pytest.mark.parametrize("cancel_first", [False, True])
def test_issue_race_cancelled_waiter_returns_handed_permit_to_pool(cancel_first: bool) -> None:
    """A waiter cancelled as the permit reaches it neither runs nor keeps the permit."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        await bh.acquire()
        ran = False

        async def waiter() -> None:
            nonlocal ran
            async with bh:
                ran = True

        task = asyncio.create_task(waiter())
        await settle(2)
        assert bh.waiting == 1
        # Same iteration: no await between the two.
        if cancel_first:
            task.cancel()
            bh.release()
        else:
            bh.release()
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not ran
        assert bh.in_use == 0
        assert bh.available == 1
        assert bh.waiting == 0

    asyncio.run(main())


@pytest.mark.parametrize("cancel_first", [False, True])
def test_issue_race_cancelled_waiter_passes_handed_permit_to_next_waiter(
    cancel_first: bool,
) -> None:
    """The permit of a waiter cancelled at hand-off goes to the next waiter in line."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        await bh.acquire()
        ran: list[str] = []

        async def waiter(label: str) -> None:
            async with bh:
                ran.append(label)
                assert bh.in_use == 1

        first = asyncio.create_task(waiter("first"))
        await settle(2)
        second = asyncio.create_task(waiter("second"))
        await settle(2)
        assert bh.waiting == 2
        if cancel_first:
            first.cancel()
            bh.release()
        else:
            bh.release()
            first.cancel()
        assert bh.in_use == 1  # the permit is in flight, never duplicated
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert ran == ["second"]
        assert bh.in_use == 0

    asyncio.run(main())


def test_issue_race_timeout_at_hand_off_does_not_run_body() -> None:
    """An asyncio.timeout firing as the permit is handed over frees it too."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
        await bh.acquire()
        ran = False
        scope: list[asyncio.Timeout] = []

        async def waiter() -> None:
            nonlocal ran
            async with asyncio.timeout(None) as timeout:
                scope.append(timeout)
                async with bh:
                    ran = True

        task = asyncio.create_task(waiter())
        await settle(2)
        loop = asyncio.get_running_loop()
        # A deadline already past makes asyncio.timeout cancel the task on the
        # next iteration (call_soon), ahead of the waiter's wake-up scheduled by
        # the hand-off: the task is cancelled after its permit was granted.
        scope[0].reschedule(loop.time() - 1)
        bh.release()
        with pytest.raises(TimeoutError):
            await task
        assert not ran
        assert bh.in_use == 0

    asyncio.run(main())


def test_rejection_builds_no_event_without_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no listener registered, a refusal builds no event at all."""

    def boom(**_: object) -> BulkheadRejected:
        raise AssertionError("event built without listeners")

    monkeypatch.setattr(bulkhead_module, "BulkheadRejected", boom)

    async def main() -> None:
        waits = Bulkhead("dep", max_concurrent=1, max_wait=0.01, listeners=Listeners())
        at_once = Bulkhead("dep", max_concurrent=1, listeners=Listeners())
        async with waits, at_once:
            with pytest.raises(BulkheadFullError):
                await waits.acquire()
            with pytest.raises(BulkheadFullError):
                await at_once.acquire()

    asyncio.run(main())
    tb = ThreadBulkhead("dep", max_concurrent=1, listeners=Listeners())
    with tb, pytest.raises(BulkheadFullError):
        tb.acquire()


def test_decorator_on_async_function_and_call_async() -> None:
    """@bulkhead and call_async hold a permit for the call and free it after."""

    async def main() -> None:
        bh = Bulkhead("dep", max_concurrent=1, listeners=Listeners())

        @bh
        async def add(a: int, b: int = 0) -> int:
            """Add two numbers."""
            assert bh.in_use == 1
            await asyncio.sleep(0)
            return a + b

        assert add.__name__ == "add"
        assert add.__doc__ == "Add two numbers."
        assert await add(1, b=2) == 3
        assert bh.in_use == 0
        assert await bh.call_async(add.__wrapped__, 4, b=5) == 9  # type: ignore[attr-defined]
        assert bh.in_use == 0

        async def fail() -> None:
            raise ValueError

        with pytest.raises(ValueError):
            await bh.call_async(fail)
        with pytest.raises(ValueError):
            await bh(fail)()
        assert bh.in_use == 0

        async def hold(started: asyncio.Event) -> None:
            started.set()
            await asyncio.sleep(10)

        started = asyncio.Event()
        task = asyncio.create_task(bh.call_async(hold, started))
        await started.wait()
        with pytest.raises(BulkheadFullError):
            await add(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bh.in_use == 0

    asyncio.run(main())


def test_decorators_refuse_the_wrong_kind_of_function() -> None:
    """Bulkhead wraps coroutine functions only, ThreadBulkhead plain ones only."""

    def sync() -> None: ...

    async def coro() -> None: ...

    with pytest.raises(TypeError, match="ThreadBulkhead"):
        Bulkhead("dep", max_concurrent=1)(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Bulkhead"):
        ThreadBulkhead("dep", max_concurrent=1)(coro)


def test_one_bulkhead_serves_successive_event_loops() -> None:
    """A module-level bulkhead works across asyncio.run() calls."""
    bh = Bulkhead("dep", max_concurrent=1, max_wait=5.0, listeners=Listeners())

    async def main() -> None:
        async def hold() -> None:
            async with bh:
                await asyncio.sleep(0.001)

        await asyncio.gather(hold(), hold(), hold())

    asyncio.run(main())
    asyncio.run(main())
    assert bh.in_use == 0


# -- ThreadBulkhead ----------------------------------------------------------------


def run_threads(n: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()


def test_thread_capacity_is_respected_exactly_under_contention() -> None:
    """16 threads released together through a bulkhead of 4: at most 4 inside, and 4 reached."""
    tb = ThreadBulkhead("dep", max_concurrent=4, max_wait=10.0, listeners=Listeners())
    barrier = threading.Barrier(16)
    lock = threading.Lock()
    inside = 0
    peak = 0
    done = 0

    def work(_: int) -> None:
        nonlocal inside, peak, done
        barrier.wait(timeout=5)
        for _ in range(5):
            with tb:
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                    assert tb.in_use <= 4
                time.sleep(0.001)
                with lock:
                    inside -= 1
                    done += 1

    run_threads(16, work)
    assert peak == 4
    assert done == 80
    assert tb.in_use == 0
    assert tb.waiting == 0


def test_thread_rejections_are_exact_with_max_wait_zero() -> None:
    """With 16 threads at a full bulkhead of 4 and no wait, exactly 12 are refused."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    tb = ThreadBulkhead("dep", max_concurrent=4, listeners=listeners)
    barrier = threading.Barrier(16)
    hold = threading.Event()
    lock = threading.Lock()
    entered = 0
    refused = 0

    def work(_: int) -> None:
        nonlocal entered, refused
        barrier.wait(timeout=5)
        try:
            with tb:
                with lock:
                    entered += 1
                assert hold.wait(timeout=5)
        except BulkheadFullError:
            with lock:
                refused += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with lock:
            if entered + refused == 16:
                break
        time.sleep(0.001)
    assert tb.in_use == 4
    hold.set()
    for t in threads:
        t.join(timeout=5)
    assert (entered, refused) == (4, 12)
    assert len(rec.of_type(BulkheadRejected)) == 12
    assert tb.in_use == 0


def test_thread_waiters_are_served_in_arrival_order() -> None:
    """A freed permit goes to the thread that has waited longest."""
    tb = ThreadBulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
    tb.acquire()
    order: list[int] = []
    threads = []

    def work(i: int) -> None:
        with tb:
            order.append(i)

    for i in range(6):
        t = threading.Thread(target=work, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while tb.waiting < i + 1 and time.monotonic() < deadline:
            time.sleep(0.0005)
    assert tb.waiting == 6
    tb.release()
    assert not tb.try_acquire()  # no barging: the permit went to thread 0
    for t in threads:
        t.join(timeout=5)
    assert order == list(range(6))
    assert tb.in_use == 0


def test_thread_max_wait_expiry_rejects_and_emits_event() -> None:
    """A thread refused after max_wait gets BulkheadFullError and an event."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    tb = ThreadBulkhead("notify", max_concurrent=1, max_wait=0.02, listeners=listeners)
    with tb:
        t0 = time.monotonic()
        with pytest.raises(BulkheadFullError) as info:
            tb.acquire()
        assert time.monotonic() - t0 >= 0.015
    assert info.value.name == "notify"
    (event,) = rec.of_type(BulkheadRejected)
    assert event.name == "notify"
    assert event.max_concurrent == 1
    assert event.waited >= 0.015
    assert tb.waiting == 0
    assert tb.in_use == 0


def test_thread_in_use_available_try_acquire_release() -> None:
    """The thread permit API mirrors the asyncio one."""
    tb = ThreadBulkhead("dep", max_concurrent=2, listeners=Listeners())
    assert tb.try_acquire()
    tb.acquire()
    assert (tb.in_use, tb.available) == (2, 0)
    assert not tb.try_acquire()
    tb.release()
    tb.release()
    assert (tb.in_use, tb.available) == (0, 2)
    with pytest.raises(RuntimeError, match="without a permit"):
        tb.release()


def test_thread_decorator_and_call_release_on_return_and_exception() -> None:
    """@thread_bulkhead and call() hold a permit for the call and free it after."""
    tb = ThreadBulkhead("dep", max_concurrent=1, listeners=Listeners())

    @tb
    def add(a: int, b: int = 0) -> int:
        """Add two numbers."""
        assert tb.in_use == 1
        return a + b

    assert add(1, b=2) == 3
    assert add.__doc__ == "Add two numbers."
    assert tb.call(add.__wrapped__, 3, 4) == 7  # type: ignore[attr-defined]

    def fail() -> None:
        raise ValueError

    with pytest.raises(ValueError):
        tb.call(fail)
    with pytest.raises(ValueError):
        tb(fail)()
    assert tb.in_use == 0
    with tb, pytest.raises(BulkheadFullError):
        add(1)
    assert tb.in_use == 0


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread() or os.name != "posix",
    reason="needs POSIX signals delivered to the main thread",
)
def test_thread_waiter_interrupted_leaves_no_waiter_and_no_permit() -> None:
    """A KeyboardInterrupt while blocked for a permit takes nothing from the bulkhead."""
    tb = ThreadBulkhead("dep", max_concurrent=1, max_wait=10.0, listeners=Listeners())
    holder_in = threading.Event()
    holder_out = threading.Event()

    def holder() -> None:
        with tb:
            holder_in.set()
            holder_out.wait(timeout=10)

    def interrupter() -> None:
        deadline = time.monotonic() + 5
        while tb.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)  # well inside the blocking wait, not just queued
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    holding = threading.Thread(target=holder)
    holding.start()
    assert holder_in.wait(timeout=5)
    interrupting = threading.Thread(target=interrupter)
    interrupting.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            tb.acquire()
    finally:
        interrupting.join(timeout=5)
        holder_out.set()
        holding.join(timeout=5)
    assert tb.waiting == 0
    assert tb.in_use == 0


# -- the ambient deadline bounds the wait ------------------------------------


def test_a_waiter_never_waits_past_the_ambient_deadline() -> None:
    """max_wait 5 s, 50 ms of deadline left: refused after about 50 ms, not 5 s."""
    b = Bulkhead("pay", max_concurrent=1, max_wait=5.0, listeners=Listeners())

    async def main() -> float:
        async with asyncio.timeout(3):
            await b.acquire()  # held for the whole test
            start = time.monotonic()
            with deadline(0.05), pytest.raises(BulkheadFullError):
                await b.acquire()  # the deadline is set (by a caller), not enforced here
            waited = time.monotonic() - start
            with deadline(0.0), pytest.raises(BulkheadFullError):
                await b.acquire()  # nothing left: refused without queueing
            assert b.in_use == 1
            return waited

    assert asyncio.run(main()) < 1.0


def test_a_thread_waiter_never_waits_past_the_ambient_deadline() -> None:
    b = ThreadBulkhead("db", max_concurrent=1, max_wait=5.0, listeners=Listeners())
    b.acquire()
    start = time.monotonic()
    with deadline(0.05), pytest.raises(BulkheadFullError):
        b.acquire()
    assert time.monotonic() - start < 1.0
    assert b.in_use == 1
