"""Throttle: the SRE formula through the driver, threads and tasks, outcomes, and events.

The window and the formula are tested against a model in
tests/core/test_throttle.py; here what the driver adds: what counts as
accepted, forgetting calls that never reached the backend, the random draw
and the events.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from datetime import timedelta

import pytest

from seawall import RejectedError, Throttle, ThrottledError
from seawall.errors import ConfigError, DeadlineExceeded
from seawall.events import Listeners, ThrottleRejected
from seawall.testing import FakeClock, RecordingListener
from seawall.throttle import refused


class Status(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status_code = status


class Draws:
    """The throttle's random source: 0.9999 (never shed) while a test fills the window."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.filling = False

    def __call__(self) -> float:
        return 0.9999 if self.filling else self.value


def throttle(clock: FakeClock, draw: float = 0.0, **options: object) -> Throttle:
    """A throttle on the book's formula alone (no floor of requests), unless told."""
    return Throttle(
        "dep",
        clock=clock,
        random=Draws(draw),
        listeners=Listeners(),
        **{"min_requests": 0, **options},  # type: ignore[arg-type]
    )


def fail(t: Throttle, times: int, status: int = 503) -> None:
    """Make ``times`` calls the backend refuses, none of them shed."""
    draws = t._random
    assert isinstance(draws, Draws)
    draws.filling = True
    try:
        for _ in range(times):
            with pytest.raises(Status), t:
                raise Status(status)
    finally:
        draws.filling = False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0.5}, "k must be a finite number >= 1"),
        ({"window": 0}, "window"),
        ({"buckets": 0}, "buckets must be"),
        ({"max_probability": 1.0}, "max_probability must be in [0, 1)"),
        ({"refused_on": 3}, "refused_on must be callable"),
        ({"random": 3}, "random must be callable"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Throttle("dep", **options)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_timedelta_window() -> None:
    assert Throttle("dep", window=timedelta(seconds=30)).config.window == 30.0


def test_sheds_nothing_while_the_backend_accepts() -> None:
    t = throttle(FakeClock())
    for _ in range(100):
        with t:
            pass
    assert t.probability == 0.0
    assert (t.requests, t.accepts, t.rejected) == (100, 100, 0)


def test_sheds_with_the_sre_probability_once_refusals_outweigh_k_accepts() -> None:
    clock = FakeClock()
    t = throttle(clock, draw=0.5, k=2.0)
    for _ in range(10):
        with t:
            pass
    fail(t, 20)  # 30 requests, 10 accepts: p = (30 - 20) / 31
    assert t.probability == pytest.approx(10 / 31)
    t.admit()  # a draw of 0.5 is above p: it goes
    t.record(Status(503))
    fail(t, 30)  # 61 requests, 10 accepts: p = 41 / 62 > 0.5
    assert t.probability == pytest.approx(41 / 62)
    with pytest.raises(ThrottledError):
        t.admit()


def test_the_draw_decides_against_the_probability() -> None:
    clock = FakeClock()
    low, high = throttle(clock, draw=0.2), throttle(clock, draw=0.9)
    for t in (low, high):
        fail(t, 9)  # 9 requests, no accepts: p = 9 / 10
    with RecordingListener(low._listeners) as events, pytest.raises(ThrottledError) as caught:
        low.admit()
    assert caught.value.probability == pytest.approx(0.9)
    assert isinstance(caught.value, RejectedError)
    assert "shed the call (p=0.90)" in str(caught.value)
    assert pickle.loads(pickle.dumps(caught.value)).probability == pytest.approx(0.9)
    [event] = events.of_type(ThrottleRejected)
    assert (event.requests, event.accepts) == (10, 0)  # the shed call counts as a request
    high.admit()  # a draw above p goes through
    high.record()
    assert (low.rejected, high.rejected) == (1, 0)


def test_nothing_is_shed_below_min_requests() -> None:
    """One timed-out call alone must not shed half of the next ones (its retry included)."""
    t = throttle(FakeClock(), draw=0.0, min_requests=10)
    fail(t, 9)
    assert t.probability == 0.0
    t.admit()  # a draw of 0 would shed at any p > 0
    t.record(Status(503))
    assert t.probability == pytest.approx(10 / 11)
    with pytest.raises(ThrottledError):
        t.admit()


def test_never_sheds_more_than_max_probability() -> None:
    t = throttle(FakeClock(), draw=0.951, max_probability=0.95)
    fail(t, 1000)
    assert t.probability == pytest.approx(0.95)
    t.admit()  # 0.951 > 0.95: some calls always go, to see recovery
    t.record()


def test_the_window_forgets_an_outage() -> None:
    clock = FakeClock()
    t = throttle(clock, draw=0.5, window=10.0, buckets=10)
    fail(t, 50)
    assert t.probability > 0.9
    clock.advance(10.0)
    assert t.probability == 0.0
    assert t.requests == 0


@pytest.mark.parametrize(
    ("error", "accepted"),
    [
        (Status(404), True),
        (Status(500), False),
        (Status(429), False),
        (ConnectionRefusedError(), False),
        (DeadlineExceeded(name="dep", timeout=1.0), False),
        (ValueError("a bug of ours"), True),
    ],
)
def test_what_counts_as_accepted(error: Exception, accepted: bool) -> None:
    assert refused(error) is not accepted
    t = throttle(FakeClock())
    with pytest.raises(type(error)), t:
        raise error
    assert t.accepts == int(accepted)


def test_a_custom_refusal_test() -> None:
    t = Throttle(
        "dep",
        refused_on=lambda e: isinstance(e, KeyError),
        random=Draws(1.0),
        listeners=Listeners(),
    )
    with pytest.raises(KeyError), t:
        raise KeyError
    with pytest.raises(Status), t:
        raise Status(503)
    assert (t.requests, t.accepts) == (2, 1)


def test_calls_count_when_they_end_and_cancelled_ones_not_at_all() -> None:
    t = throttle(FakeClock())

    async def main() -> None:
        async def call() -> None:
            async with t:
                await asyncio.sleep(3600)

        tasks = [asyncio.create_task(call()) for _ in range(20)]
        await asyncio.sleep(0)
        # A burst in flight is no refusal: nothing of it is shed, even with a
        # draw of 0, and nothing is counted yet.
        assert t.requests == 0
        assert t.rejected == 0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert (t.requests, t.accepts) == (0, 0)


def test_decorator_and_call_serve_sync_and_async_functions() -> None:
    t = throttle(FakeClock())

    @t
    def work() -> int:
        return 1

    @t
    async def work_async() -> int:
        return 2

    async def fails() -> None:
        raise Status(503)

    assert work() == 1
    assert asyncio.run(work_async()) == 2
    assert t.call(lambda: 3) == 3
    with pytest.raises(Status):
        asyncio.run(t.call_async(fails))
    assert (t.requests, t.accepts) == (4, 3)


def test_real_threads_count_every_call() -> None:
    t = Throttle("dep", listeners=Listeners())
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for i in range(500):
            try:
                with t:
                    if i % 2:
                        raise Status(503)
            except (Status, ThrottledError):
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert not any(th.is_alive() for th in threads)
    # Half refused: requests <= 2 * accepts, so nothing was ever shed.
    assert (t.requests, t.accepts, t.rejected) == (4000, 2000, 0)


def test_reset_forgets_everything() -> None:
    t = throttle(FakeClock(), draw=0.0)
    fail(t, 20)
    t.reset()
    assert (t.requests, t.accepts, t.probability) == (0, 0, 0.0)
    assert "requests=0 accepts=0" in repr(t)
