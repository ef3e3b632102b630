"""AdaptiveLimit: configuration, permits in threads and tasks, what it learns, and events.

The algorithms themselves are tested in tests/core (unit, property and
simulation tests); here the driver: one object for both kinds of caller, a
refusal at the limit, every permit back on every way out, and the measured
RTT reaching the algorithm through the injected clock.
"""

from __future__ import annotations

import asyncio
import pickle
import threading

import pytest

from seawall import AdaptiveLimit, BulkheadFullError, LimitExceededError, RejectedError
from seawall.core.limit import Aimd, SampleWindowConfig
from seawall.errors import ConfigError, DeadlineExceeded
from seawall.events import LimitChanged, LimitRejected, Listeners
from seawall.testing import FakeClock, RecordingListener

# Every finished call closes a window: the tests see each step of the algorithm.
EACH_CALL = SampleWindowConfig(min_time=1e-9, max_time=1e-9, min_samples=1, min_rtt=0.0)


class Status(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status_code = status


def aimd(clock: FakeClock, **options: object) -> AdaptiveLimit:
    defaults: dict[str, object] = {"initial": 4, "min": 1, "max": 10, "timeout": 1.0}
    return AdaptiveLimit(
        "dep",
        algorithm="aimd",
        window=EACH_CALL,
        clock=clock,
        listeners=Listeners(),
        **{**defaults, **options},  # type: ignore[arg-type]
    )


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"initial": 0}, "initial must be"),
        ({"min": 5, "initial": 2}, "initial (2) must be within [min, max] = [5, 200]"),
        ({"max": 0}, "max must be"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"tolerance": 0.5}, "tolerance must be a finite number >= 1"),
        ({"backoff_ratio": 0.9}, "backoff_ratio: AIMD's options, not Gradient2's"),
        ({"algorithm": "aimd", "queue_size": 3}, "queue_size: Gradient2's options, not AIMD's"),
        ({"algorithm": "aimd", "backoff_ratio": 1.0}, "backoff_ratio must be in [0.5, 1)"),
        ({"algorithm": "aimd", "timeout": 0}, "timeout"),
        ({"algorithm": "vegas"}, "algorithm must be one of gradient2, aimd"),
        ({"window": {"min_time": 1}}, "window must be a SampleWindowConfig"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AdaptiveLimit("dep", **options)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_bad_name_and_bad_numbers_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        AdaptiveLimit("", initial=0)
    assert "name must be a non-empty string" in str(caught.value)
    assert "initial must be" in str(caught.value)


def test_a_custom_algorithm_is_used_as_given_and_refuses_tuning() -> None:
    algo = Aimd()
    assert AdaptiveLimit("dep", algorithm=algo).algorithm is algo
    with pytest.raises(ConfigError, match="tuning options are for the named algorithms"):
        AdaptiveLimit("dep", algorithm=algo, smoothing=0.5)


def test_reads_like_a_bulkhead() -> None:
    limit = AdaptiveLimit("dep", initial=3, min=1, max=9)
    assert (limit.limit, limit.max_concurrent, limit.in_flight, limit.available) == (3, 3, 0, 3)
    assert limit.try_acquire()
    assert (limit.in_use, limit.available) == (1, 2)
    limit.release()
    assert "in_flight=0/3" in repr(limit)


# -- permits -------------------------------------------------------------------------


def test_refuses_at_the_limit_with_a_bulkhead_full_error_and_an_event() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=2)
    with RecordingListener(limit._listeners) as events:
        limit.acquire()
        limit.acquire()
        assert not limit.try_acquire()
        with pytest.raises(LimitExceededError) as caught:
            limit.acquire()
    error = caught.value
    assert isinstance(error, BulkheadFullError)
    assert isinstance(error, RejectedError)
    assert (error.name, error.limit, error.max_concurrent) == ("dep", 2, 2)
    assert "adaptive limit 'dep' reached (2 in flight)" in str(error)
    assert pickle.loads(pickle.dumps(error)).limit == 2
    assert [(e.name, e.limit) for e in events.of_type(LimitRejected)] == [("dep", 2)]
    assert limit.rejected == 1
    assert limit.in_flight == 2


def test_release_without_a_permit_is_an_error() -> None:
    limit = AdaptiveLimit("dep")
    with pytest.raises(RuntimeError, match="release\\(\\) without a permit held"):
        limit.release()


def test_with_measures_the_rtt_on_the_injected_clock() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=2, timeout=1.0)
    # A call as slow as the timeout and over it: AIMD backs off.
    with limit:
        clock.advance(1.5)
    assert limit.limit == 1
    assert limit.in_flight == 0


def test_nested_withs_each_measure_their_own_call() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=4, timeout=1.0)
    with limit:  # outer: 2.01 s, a drop by the timeout
        clock.advance(2.0)
        with limit:  # inner: 10 ms, in flight 2 of 4: grows
            clock.advance(0.01)
        assert limit.limit == 5
        clock.advance(0.01)  # into the next window
    assert limit.limit == 4  # int(5 * 0.9)


def test_a_dropped_failure_backs_off_and_an_unrelated_one_teaches_nothing() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=8)
    with pytest.raises(Status), limit:
        raise Status(503)
    assert limit.limit == 7  # 8 * 0.9, a refusal by the dependency
    with pytest.raises(Status), limit:
        raise Status(404)
    assert limit.limit == 7
    with pytest.raises(DeadlineExceeded), limit:
        raise DeadlineExceeded(name="dep", timeout=1.0)
    assert limit.limit == 6
    assert limit.in_flight == 0


def test_decorator_and_call_serve_sync_and_async_functions() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=2)
    seen: list[int] = []

    @limit
    def work() -> int:
        seen.append(limit.in_flight)
        return 1

    @limit
    async def work_async() -> int:
        seen.append(limit.in_flight)
        await asyncio.sleep(0)
        return 2

    assert work() == 1
    assert asyncio.run(work_async()) == 2
    assert limit.call(lambda: 3) == 3
    assert asyncio.run(limit.call_async(work_async.__wrapped__)) == 2  # type: ignore[attr-defined]
    assert seen == [1, 1, 1]
    assert limit.in_flight == 0


def test_cancelled_tasks_give_every_permit_back() -> None:
    limit = AdaptiveLimit("dep", initial=5, max=5)

    async def main() -> None:
        started = asyncio.Event()

        async def hold() -> None:
            async with limit:
                started.set()
                await asyncio.sleep(3600)

        tasks = [asyncio.create_task(hold()) for _ in range(5)]
        await started.wait()
        for _ in range(5):
            await asyncio.sleep(0)
        assert limit.in_flight == 5
        with pytest.raises(LimitExceededError):
            async with limit:
                pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert limit.in_flight == 0
    assert limit.limit == 5  # a cancellation teaches nothing


def test_real_threads_never_exceed_the_limit() -> None:
    limit = AdaptiveLimit("dep", initial=4, min=4, max=4)
    inside = 0
    peak = 0
    refused = 0
    guard = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        nonlocal inside, peak, refused
        start.wait()
        for _ in range(200):
            try:
                with limit:
                    with guard:
                        inside += 1
                        peak = max(peak, inside)
                    with guard:
                        inside -= 1
            except LimitExceededError:
                with guard:
                    refused += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert peak <= 4
    assert limit.in_flight == 0
    assert refused == limit.rejected


def test_a_limit_that_moves_emits_one_event_per_change() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=2, max=3)
    with RecordingListener(limit._listeners) as events:
        for _ in range(3):
            with limit:  # in flight 1 of 2, then of 3: half of the limit is in use
                clock.advance(0.1)
    changes = [(e.old, e.new) for e in events.of_type(LimitChanged)]
    assert changes == [(2, 3)]  # then at max: no more change, no more events
    assert events.of_type(LimitChanged)[0].in_flight == 1


def test_a_busy_limit_times_few_calls_and_a_quiet_one_all() -> None:
    """The sampling period follows the rate: about 4 x min_samples timed calls a window."""
    clock = FakeClock()
    limit = AdaptiveLimit("dep", initial=50, max=100, clock=clock, listeners=Listeners())
    timed = 0
    real_now = limit._now

    def counting_now() -> float:
        nonlocal timed
        timed += 1
        return real_now()

    limit._now = counting_now  # type: ignore[method-assign]
    for _ in range(100_000):  # 100,000 calls a second
        with limit:
            clock.advance(0.00001)
    # At most one call in 128 timed (the power of two under four limits of
    # 50): a few thousand clock reads for 100,000 calls, not 200,000.
    assert timed < 5_000, timed
    timed = 0
    for _ in range(300):  # then 10 calls a second: within 128 calls, every call timed again
        with limit:
            clock.advance(0.1)
    assert timed >= 2 * (300 - 128 - 16), timed


def test_a_drop_is_counted_even_when_its_call_was_not_timed() -> None:
    clock = FakeClock()
    limit = aimd(clock, initial=10, max=10, timeout=1.0)
    limit._period = 1023  # as if very busy: almost no call is timed

    def refused() -> None:
        raise Status(503)

    with pytest.raises(Status):
        limit.call(lambda: (clock.advance(0.01), refused()))
    # The drop counts at the window's end (untimed: its RTT is not known).
    clock.advance(0.01)
    with pytest.raises(Status):
        limit.call(lambda: (clock.advance(0.01), refused()))
    assert limit.limit < 10
    assert limit.in_flight == 0
