"""Outbox workers: the delivery thread, the asyncio task, flush, and how they share an outbox.

These run on the real clock with short delays; every wait has an explicit bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from seawall.events import Listeners, OutboxDelivered, OutboxDeliveryFailed
from seawall.outbox import Outbox, OutboxEntry
from seawall.testing import RecordingListener

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

WAIT = 5.0  # seconds: an upper bound, never a sleep


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


async def wait_until_async(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
def make(tmp_path: Path, listeners: Listeners) -> Iterator[Callable[..., Outbox]]:
    built: list[Outbox] = []

    def build(**kwargs: Any) -> Outbox:
        kwargs.setdefault("listeners", listeners)
        kwargs.setdefault("synchronous", "normal")
        kwargs.setdefault("backoff_initial", 0.01)
        kwargs.setdefault("backoff_maximum", 0.02)
        outbox = Outbox(tmp_path / "outbox.db", **kwargs)
        built.append(outbox)
        return outbox

    yield build
    for outbox in built:
        outbox.close()


# -- the thread worker ---------------------------------------------------------


def test_thread_worker_is_woken_by_put_not_by_polling(make: Callable[..., Outbox]) -> None:
    """With a 60 s poll interval, a put is still delivered at once: put wakes the worker."""
    arrived = threading.Event()
    outbox = make(deliver=lambda entry: arrived.set(), poll_interval=60)
    outbox.start()
    time.sleep(0.05)  # let the worker go idle on its (long) wait
    started = time.monotonic()
    outbox.put("t", 1)
    assert arrived.wait(WAIT)
    assert time.monotonic() - started < 1.0
    assert outbox.stop(timeout=WAIT)


def test_thread_worker_retries_until_delivered(
    make: Callable[..., Outbox], recorder: RecordingListener
) -> None:
    """Failures are retried with backoff until the receiver takes the entry."""
    outcomes = [ConnectionError("1"), TimeoutError("2"), None]

    def deliver(entry: OutboxEntry) -> None:
        error = outcomes.pop(0)
        if error is not None:
            raise error

    with make(deliver=deliver) as outbox:
        entry_id = outbox.put("t", 1)
        wait_until(lambda: outbox.delivered == 1)
    assert [e.attempts for e in recorder.of_type(OutboxDeliveryFailed)] == [1, 2]
    [delivered] = recorder.of_type(OutboxDelivered)
    assert (delivered.entry_id, delivered.attempts) == (entry_id, 3)


def test_worker_pauses_when_the_receiver_is_down(make: Callable[..., Outbox]) -> None:
    """A down receiver sees about one attempt per backoff pause, not one per pending entry."""
    attempts: list[float] = []

    def deliver(entry: OutboxEntry) -> None:
        attempts.append(time.monotonic())
        raise ConnectionError("down")

    outbox = make(deliver=deliver, backoff_initial=0.05, backoff_maximum=0.05, random=lambda: 1.0)
    for n in range(200):
        outbox.put("t", n)
    outbox.start()
    time.sleep(0.3)
    assert outbox.stop(timeout=WAIT)
    # 0.3 s at one attempt per 0.05 s pause: about 6, certainly not 200.
    assert 1 <= len(attempts) <= 10
    assert outbox.depth == 200


def test_thread_worker_awaits_an_async_deliver(make: Callable[..., Outbox]) -> None:
    """A coroutine deliver is run to completion on the thread's own event loop."""
    seen: list[Any] = []

    async def deliver(entry: OutboxEntry) -> None:
        await asyncio.sleep(0)
        seen.append(entry.payload)

    with make(deliver=deliver) as outbox:
        for n in range(3):
            outbox.put("t", n)
        wait_until(lambda: outbox.depth == 0)
    assert seen == [0, 1, 2]


def test_start_twice_and_start_after_close_raise(make: Callable[..., Outbox]) -> None:
    """One worker at a time, and none on a closed outbox."""
    outbox = make(deliver=lambda entry: None)
    outbox.start()
    running_before = outbox.running
    with pytest.raises(RuntimeError, match="already has a running worker"):
        outbox.start()
    outbox.close()
    assert (running_before, outbox.running) == (True, False)
    with pytest.raises(RuntimeError, match="closed"):
        outbox.start()


def test_stop_reports_a_worker_stuck_in_deliver(make: Callable[..., Outbox]) -> None:
    """stop(timeout) returns False while a delivery hangs, True once it is done."""
    release = threading.Event()
    entered = threading.Event()

    def deliver(entry: OutboxEntry) -> None:
        entered.set()
        release.wait(WAIT)

    outbox = make(deliver=deliver)
    outbox.start()
    outbox.put("t", 1)
    assert entered.wait(WAIT)
    assert outbox.stop(timeout=0.05) is False
    release.set()
    assert outbox.stop(timeout=WAIT) is True
    assert outbox.depth == 0


# -- flush ---------------------------------------------------------------------------


def test_flush_stops_at_the_first_failure_and_returns_what_remains(
    make: Callable[..., Outbox],
) -> None:
    """Flush ignores backoff but not failure: the rest waits for the next start."""
    seen: list[Any] = []

    def deliver(entry: OutboxEntry) -> None:
        seen.append(entry.payload)
        if entry.payload == 1:
            raise ConnectionError("down")

    outbox = make(deliver=deliver, backoff_initial=100, backoff_maximum=100)
    for n in range(4):
        outbox.put("t", n)
    assert outbox.flush(timeout=WAIT) == 3
    assert seen == [0, 1]
    # Backoff is ignored: the failed entry is tried again at once, after the rest.
    seen.clear()
    outbox._deliver = lambda entry: seen.append(entry.payload)
    assert outbox.flush(timeout=WAIT) == 0
    assert seen == [2, 3, 1]


def test_flush_timeout_is_checked_between_deliveries(make: Callable[..., Outbox]) -> None:
    """A flush out of time leaves the rest pending."""

    def deliver(entry: OutboxEntry) -> None:
        time.sleep(0.02)

    outbox = make(deliver=deliver)
    for n in range(100):
        outbox.put("t", n)
    started = time.monotonic()
    remaining = outbox.flush(timeout=0.1)
    assert time.monotonic() - started < 1.0
    assert 0 < remaining < 100


def test_flush_while_the_thread_worker_runs_delivers_each_entry_once(
    make: Callable[..., Outbox],
) -> None:
    """The worker steps aside for a flush; no entry goes out twice."""
    seen: list[str] = []
    lock = threading.Lock()

    def deliver(entry: OutboxEntry) -> None:
        time.sleep(0.0005)
        with lock:
            seen.append(entry.id)

    outbox = make(deliver=deliver)
    ids = [outbox.put("t", n) for n in range(300)]
    outbox.start()
    time.sleep(0.02)
    assert outbox.flush(timeout=WAIT) == 0
    assert outbox.stop(timeout=WAIT)
    assert sorted(seen) == sorted(ids)  # type: ignore[type-var]


def test_sync_flush_refuses_an_async_deliver_inside_a_running_loop(
    make: Callable[..., Outbox],
) -> None:
    """Inside a coroutine, flush() cannot run a coroutine deliver: it says to use flush_async."""

    async def deliver(entry: OutboxEntry) -> None:
        pass

    outbox = make(deliver=deliver)
    outbox.put("t", 1)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="flush_async"):
            outbox.flush()
        assert await outbox.flush_async(timeout=WAIT) == 0

    asyncio.run(main())


# -- the asyncio worker ----------------------------------------------------------------


def test_async_worker_delivers_entries_put_async(
    make: Callable[..., Outbox], recorder: RecordingListener
) -> None:
    """put_async stores the entry; the task on the loop delivers it with the async deliver."""
    seen: list[Any] = []

    async def deliver(entry: OutboxEntry) -> None:
        await asyncio.sleep(0)
        seen.append(entry.payload)

    async def main() -> None:
        async with make(deliver=deliver, poll_interval=60) as outbox:
            ids = [await outbox.put_async("t", n) for n in range(20)]
            await wait_until_async(lambda: len(seen) == 20)
            assert outbox.depth == 0 or await outbox.flush_async(timeout=WAIT) == 0
        assert [e.entry_id for e in recorder.of_type(OutboxDelivered)] == ids

    asyncio.run(main())
    assert seen == list(range(20))


def test_async_worker_runs_a_sync_deliver_off_the_loop(make: Callable[..., Outbox]) -> None:
    """A plain deliver runs in a thread, so a blocking one does not stall the loop."""
    threads: list[int] = []

    def deliver(entry: OutboxEntry) -> None:
        threads.append(threading.get_ident())
        time.sleep(0.01)

    async def main() -> None:
        async with make(deliver=deliver) as outbox:
            outbox.put("t", 1)  # the sync put also wakes the asyncio worker
            ticks = 0
            while outbox.depth:
                ticks += 1
                await asyncio.sleep(0.001)
                assert ticks < WAIT * 1000
            assert ticks > 1  # the loop kept running during the delivery

    asyncio.run(main())
    assert threads
    assert threading.get_ident() not in threads


def test_async_worker_retries_with_backoff(make: Callable[..., Outbox]) -> None:
    """The asyncio worker reschedules failures and delivers once the receiver is back."""
    calls: list[int] = []

    async def deliver(entry: OutboxEntry) -> None:
        calls.append(entry.attempts)
        if len(calls) < 3:
            raise ConnectionError("down")

    async def main() -> None:
        async with make(deliver=deliver) as outbox:
            await outbox.put_async("t", 1)
            await wait_until_async(lambda: outbox.depth == 0)

    asyncio.run(main())
    assert calls == [0, 1, 2]


def test_stop_async_cancels_a_hung_delivery_and_keeps_the_entry(
    make: Callable[..., Outbox],
) -> None:
    """A delivery that outlives stop_async's timeout is cancelled; the entry stays pending."""
    entered = asyncio.Event()

    async def deliver(entry: OutboxEntry) -> None:
        entered.set()
        await asyncio.Event().wait()  # never returns

    async def main() -> None:
        outbox = make(deliver=deliver)
        await outbox.start_async()
        await outbox.put_async("t", 1)
        async with asyncio.timeout(WAIT):
            await entered.wait()
        assert await outbox.stop_async(timeout=0.05) is False
        assert not outbox.running
        assert outbox.depth == 1

    asyncio.run(main())


def test_flush_async_timeout_cuts_a_hung_delivery_short(make: Callable[..., Outbox]) -> None:
    """flush_async's timeout bounds the whole flush, a delivery in progress included."""

    async def deliver(entry: OutboxEntry) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        outbox = make(deliver=deliver)
        await outbox.put_async("t", 1)
        started = time.monotonic()
        assert await outbox.flush_async(timeout=0.05) == 1
        assert time.monotonic() - started < 1.0
        assert await outbox.deliver_due_async(timeout=0.05) == 0

    asyncio.run(main())


def test_one_worker_kind_at_a_time(make: Callable[..., Outbox]) -> None:
    """The thread and the asyncio worker would deliver the same entries: only one may run."""
    outbox = make(deliver=lambda entry: None)

    async def main() -> None:
        await outbox.start_async()
        with pytest.raises(RuntimeError, match="already has a running worker"):
            outbox.start()
        assert await outbox.stop_async(timeout=WAIT)

    asyncio.run(main())
    outbox.start()
    assert outbox.stop(timeout=WAIT)


def test_entries_left_by_a_previous_owner_are_replayed_on_start(
    make: Callable[..., Outbox],
) -> None:
    """Pending rows from an earlier run are delivered as soon as a worker starts."""
    first = make(deliver=lambda entry: None)
    ids = [first.put("t", n) for n in range(5)]
    first.close()

    seen: list[str] = []
    with make(deliver=lambda entry: seen.append(entry.id)) as second:
        wait_until(lambda: second.depth == 0)
    assert seen == ids


def test_an_object_with_an_async_call_is_an_async_deliver(make: Callable[..., Outbox]) -> None:
    """A receiver object whose __call__ is a coroutine is awaited on the loop, not sent to a thread."""

    class Receiver:
        def __init__(self) -> None:
            self.threads: list[int] = []

        async def __call__(self, entry: OutboxEntry) -> None:
            self.threads.append(threading.get_ident())

    receiver = Receiver()
    outbox = make(deliver=receiver)

    async def main() -> None:
        await outbox.put_async("t", 1)
        assert await outbox.flush_async(timeout=WAIT) == 0

    asyncio.run(main())
    assert receiver.threads == [threading.get_ident()]
