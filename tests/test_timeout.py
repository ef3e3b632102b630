"""timeout(), deadline() and remaining(): real asyncio, real time (tens of milliseconds)."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from datetime import timedelta

import pytest

from seawall.core.backoff import Backoff
from seawall.errors import ConfigError, DeadlineExceeded
from seawall.events import Listeners, TimedOut
from seawall.retry import Retry
from seawall.testing import RecordingListener
from seawall.timeouts import current_deadline, deadline, remaining, timeout

# Expiry must not come early; "late" allows for a loaded machine.
LATE = 1.0


def run(coro):
    return asyncio.run(coro)


# -- the ambient deadline outside of asyncio -------------------------------------------


def test_no_deadline_means_none() -> None:
    assert remaining() is None
    assert current_deadline() is None


def test_sync_deadline_sets_and_restores_the_budget() -> None:
    before = time.monotonic()
    with deadline(2.0):
        left = remaining()
        assert left is not None
        assert 1.9 < left <= 2.0
        at = current_deadline()
        assert at is not None
        assert before + 2.0 <= at <= time.monotonic() + 2.0
    assert remaining() is None


def test_deadlines_nest_and_only_shorten() -> None:
    with deadline(1.0):
        with deadline(10.0):
            left = remaining()
            assert left is not None
            assert left <= 1.0
        with deadline(0.2):
            left = remaining()
            assert left is not None
            assert left <= 0.2
        left = remaining()
        assert left is not None
        assert 0.2 < left <= 1.0


def test_remaining_is_zero_once_the_deadline_has_passed() -> None:
    with deadline(0.0):
        assert remaining() == 0.0


def test_deadline_accepts_a_timedelta() -> None:
    with deadline(timedelta(milliseconds=500)):
        left = remaining()
        assert left is not None
        assert 0.4 < left <= 0.5


def test_threads_do_not_inherit_but_a_copied_context_does() -> None:
    seen: list[float | None] = []
    with deadline(5.0):
        plain = threading.Thread(target=lambda: seen.append(remaining()))
        ctx = contextvars.copy_context()
        carried = threading.Thread(target=ctx.run, args=(lambda: seen.append(remaining()),))
        plain.start()
        plain.join()
        carried.start()
        carried.join()
    assert seen[0] is None
    assert seen[1] is not None
    assert seen[1] <= 5.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1", None, True])
def test_bad_budgets_raise_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="seconds"):
        deadline(bad)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(ConfigError, match="seconds"):
            timeout(bad)  # type: ignore[arg-type]


# -- timeout() ------------------------------------------------------------------------------


def test_timeout_lets_a_quick_body_finish() -> None:
    async def main() -> tuple[str, float | None]:
        async with timeout(1.0, name="payment"):
            await asyncio.sleep(0)
            return "done", remaining()

    result, left = run(main())
    assert result == "done"
    assert left is not None
    assert 0.5 < left <= 1.0


def test_timeout_expiry_raises_deadline_exceeded_and_emits_an_event() -> None:
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)

    async def main() -> None:
        async with timeout(0.02, name="payment", listeners=listeners):
            await asyncio.sleep(10)

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        run(main())
    took = time.monotonic() - start
    assert 0.02 <= took < LATE
    assert isinstance(info.value, TimeoutError)
    assert info.value.name == "payment"
    assert info.value.timeout == pytest.approx(0.02, abs=0.005)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    (event,) = rec.of_type(TimedOut)
    assert event.name == "payment"
    assert event.timeout == pytest.approx(0.02, abs=0.005)


def test_a_timeout_error_of_the_body_is_not_ours() -> None:
    async def main() -> None:
        async with timeout(10.0):
            raise TimeoutError("the client's own")

    with pytest.raises(TimeoutError, match="the client's own") as info:
        run(main())
    assert not isinstance(info.value, DeadlineExceeded)


def test_timeout_inside_a_deadline_uses_the_smaller() -> None:
    async def main() -> float | None:
        async with deadline(0.03, name="request"):
            async with timeout(10.0, name="payment"):
                left = remaining()
                await asyncio.sleep(10)
        return left

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        run(main())
    assert 0.03 <= time.monotonic() - start < LATE


def test_inner_timeout_shorter_than_the_deadline_wins_and_restores_it() -> None:
    async def main() -> tuple[float | None, float | None]:
        async with deadline(5.0):
            with pytest.raises(DeadlineExceeded) as info:
                async with timeout(0.01, name="inner"):
                    inner = remaining()
                    await asyncio.sleep(10)
            assert info.value.name == "inner"
            return inner, remaining()

    inner, after = run(main())
    assert inner is not None
    assert inner <= 0.01
    assert after is not None
    assert 4.0 < after <= 5.0


def test_timeout_none_enforces_only_the_ambient_deadline() -> None:
    async def free() -> float | None:
        async with timeout(None):
            await asyncio.sleep(0.001)
            return remaining()

    async def bounded() -> None:
        async with deadline(0.02):
            async with timeout(None, name="unbounded"):
                await asyncio.sleep(10)

    assert run(free()) is None
    with pytest.raises(DeadlineExceeded):
        run(bounded())


def test_a_sync_deadline_reaches_into_asyncio_run() -> None:
    async def main() -> None:
        async with timeout(10.0):
            await asyncio.sleep(10)

    start = time.monotonic()
    with deadline(0.02), pytest.raises(DeadlineExceeded):
        run(main())
    assert time.monotonic() - start < LATE


def test_nested_async_deadlines_expire_at_the_earliest() -> None:
    async def main() -> None:
        async with deadline(0.5, name="outer"):
            async with deadline(5.0, name="middle"):
                async with deadline(0.02, name="inner"):
                    await asyncio.sleep(10)

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        run(main())
    assert info.value.name == "inner"
    assert 0.02 <= time.monotonic() - start < 0.5


# -- propagation across tasks --------------------------------------------------------------


def test_deadline_is_inherited_by_tasks_and_gather() -> None:
    async def child() -> float | None:
        await asyncio.sleep(0)
        return remaining()

    async def main() -> list[float | None]:
        async with deadline(2.0):
            task = asyncio.create_task(child())
            gathered = await asyncio.gather(child(), child())
            return [await task, *gathered]

    for left in run(main()):
        assert left is not None
        assert 1.0 < left <= 2.0


def test_a_task_enforces_the_deadline_it_inherited() -> None:
    """The parent only waits; the child's own timeout(10) ends at the parent's 20 ms deadline."""

    async def child() -> None:
        async with timeout(10.0, name="child"):
            await asyncio.sleep(10)

    async def main() -> BaseException | None:
        with deadline(0.02):  # a sync deadline: no timer in the parent at all
            task = asyncio.create_task(child())
        try:
            await task
        except DeadlineExceeded as exc:
            return exc
        return None

    start = time.monotonic()
    exc = run(main())
    assert isinstance(exc, DeadlineExceeded)
    assert exc.name == "child"
    assert time.monotonic() - start < LATE


def test_a_deadline_set_in_a_task_does_not_leak_to_its_parent() -> None:
    async def child() -> None:
        async with deadline(0.5):
            await asyncio.sleep(0)

    async def main() -> float | None:
        await asyncio.create_task(child())
        return remaining()

    assert run(main()) is None


# -- cancellation --------------------------------------------------------------------------------


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def victim(started: asyncio.Event) -> None:
        async with timeout(10.0, name="victim"):
            started.set()
            await asyncio.sleep(10)

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(victim(started))
        await started.wait()
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        run(main())


def test_an_outer_asyncio_timeout_is_not_turned_into_ours() -> None:
    """Only the scope that expired converts: an outer asyncio.timeout stays a plain TimeoutError."""

    async def main() -> None:
        async with asyncio.timeout(0.02):
            async with timeout(10.0, name="inner"):
                await asyncio.sleep(10)

    with pytest.raises(TimeoutError) as info:
        run(main())
    assert not isinstance(info.value, DeadlineExceeded)


def test_cancelled_while_the_deadline_expires_stays_cancelled() -> None:
    """A cancel request and our expiry in the same loop turn: the outside request wins."""

    async def victim() -> None:
        async with timeout(0.0):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(victim())
        await asyncio.sleep(0)  # the task enters the scope; its timer is now due
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        run(main())


def test_an_expired_scope_does_not_swallow_later_cancellation() -> None:
    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            async with timeout(0.01):
                await asyncio.sleep(10)
        # the task is not left with a pending cancellation
        await asyncio.sleep(0.01)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    run(main())


# -- retry under a deadline ------------------------------------------------------------------


def test_retry_gives_up_with_the_last_error_before_an_async_deadline() -> None:
    """With a 1 s delay and 50 ms left, Retry fails at once instead of sleeping into the deadline."""
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    retry = Retry(attempts=5, backoff=Backoff.constant(1.0))

    async def main() -> None:
        async with deadline(0.05):
            await retry.call_async(down)

    start = time.monotonic()
    with pytest.raises(ConnectionError):
        run(main())
    assert calls == 1
    assert time.monotonic() - start < 0.5


def test_retry_retries_a_per_attempt_timeout() -> None:
    calls = 0
    retry = Retry(attempts=3, backoff=Backoff.constant(0.0))

    @retry
    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        async with timeout(0.01, name="attempt"):
            await asyncio.sleep(10 if calls < 3 else 0)
        return "ok"

    assert run(slow_then_fast()) == "ok"
    assert calls == 3
