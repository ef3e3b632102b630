"""The circuit breaker's contract, rule by rule, through every driver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from seawall import CircuitBreaker, CircuitOpenError, CountWindow, State, TimeWindow
from seawall.events import CallRejected, Listeners, StateChanged
from seawall.testing import FakeClock, RecordingListener
from tests.breaker_drivers import Driver


class Boom(Exception):
    pass


class Ignored(Exception):
    pass


def make(clock: FakeClock, listeners: Listeners | None = None, **kw: Any) -> CircuitBreaker:
    options: dict[str, Any] = {
        "window": CountWindow(10),
        "minimum_calls": 4,
        "open_duration": 10.0,
        "half_open_calls": 2,
    }
    options.update(kw)
    return CircuitBreaker("dep", clock=clock, listeners=listeners or Listeners(), **options)


def fail(drive: Driver, b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert drive(b, raises=Boom()) == "failed"


def succeed(drive: Driver, b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert drive(b) == "ok"


def open_breaker(drive: Driver, b: CircuitBreaker) -> None:
    fail(drive, b, 4)
    assert b.state is State.OPEN


# -- CLOSED -> OPEN ---------------------------------------------------------


def test_no_decision_before_minimum_calls(drive: Driver, clock: FakeClock) -> None:
    """Three failures of three calls stay CLOSED while minimum_calls is four."""
    b = make(clock)
    fail(drive, b, 3)
    assert b.state is State.CLOSED
    assert b.metrics.failure_rate == 1.0


def test_opens_when_failure_rate_reaches_threshold(drive: Driver, clock: FakeClock) -> None:
    """Two of four failed is 50%: the default threshold is reached, so it opens."""
    b = make(clock)
    succeed(drive, b, 2)
    fail(drive, b, 1)
    assert b.state is State.CLOSED
    fail(drive, b, 1)
    assert b.state is State.OPEN


def test_below_threshold_stays_closed(drive: Driver, clock: FakeClock) -> None:
    """Failures under the threshold in a full window never open it."""
    b = make(clock, failure_rate_threshold=0.5)
    for _ in range(10):
        succeed(drive, b, 2)
        fail(drive, b, 1)  # one in three fails: 33% < 50%
    assert b.state is State.CLOSED
    m = b.metrics
    assert m.calls == 10
    assert 3 <= m.failures <= 4


def test_success_that_reaches_minimum_calls_decides(drive: Driver, clock: FakeClock) -> None:
    """Three failures then a success: at the fourth call the rate is 75%, so it opens."""
    b = make(clock)
    fail(drive, b, 3)
    succeed(drive, b, 1)
    assert b.state is State.OPEN


def test_count_window_forgets_old_failures(drive: Driver, clock: FakeClock) -> None:
    """Failures older than the window's size no longer count."""
    b = make(clock, failure_rate_threshold=0.5, minimum_calls=10)
    fail(drive, b, 4)
    succeed(drive, b, 6)  # 4 of 10 failed: 40%
    assert b.state is State.CLOSED
    succeed(drive, b, 4)  # the four failures have left the window
    assert b.metrics.failures == 0
    fail(drive, b, 4)  # 4 of 10 again
    assert b.state is State.CLOSED
    fail(drive, b, 1)  # 5 of 10 = 50%
    assert b.state is State.OPEN


def test_count_window_smaller_than_minimum_calls_decides_when_full(
    drive: Driver, clock: FakeClock
) -> None:
    """CountWindow(3) with minimum_calls=20 decides once three calls are in."""
    b = make(clock, window=CountWindow(3), minimum_calls=20)
    fail(drive, b, 2)
    assert b.state is State.CLOSED
    fail(drive, b, 1)
    assert b.state is State.OPEN


def test_slow_calls_open_it(drive: Driver, clock: FakeClock) -> None:
    """Calls slower than slow_call_duration open it at the slow-call rate threshold."""
    b = make(clock, slow_call_rate_threshold=0.5, slow_call_duration=2.0)
    for _ in range(3):
        assert drive(b, takes=2.5) == "ok"
    assert b.state is State.CLOSED
    assert b.metrics.slow_calls == 3
    assert drive(b, takes=0.1) == "ok"  # 3 of 4 slow
    assert b.state is State.OPEN


def test_a_call_of_exactly_slow_call_duration_is_not_slow(drive: Driver, clock: FakeClock) -> None:
    """Slow means strictly longer than slow_call_duration."""
    b = make(clock, slow_call_rate_threshold=0.5, slow_call_duration=2.0)
    for _ in range(6):
        assert drive(b, takes=2.0) == "ok"
    assert b.metrics.slow_calls == 0
    assert b.state is State.CLOSED


def test_slow_rate_threshold_of_one_never_opens(drive: Driver, clock: FakeClock) -> None:
    """The default slow_call_rate_threshold=1.0 means slow calls never open it."""
    b = make(clock, slow_call_duration=1.0)
    for _ in range(12):
        assert drive(b, takes=5.0) == "ok"
    assert b.state is State.CLOSED


def test_slow_failures_count_as_both(drive: Driver, clock: FakeClock) -> None:
    """A slow failed call counts toward both rates."""
    b = make(clock, slow_call_rate_threshold=0.9, slow_call_duration=1.0, minimum_calls=10)
    assert drive(b, raises=Boom(), takes=3.0) == "failed"
    m = b.metrics
    assert (m.calls, m.failures, m.slow_calls) == (1, 1, 1)


# -- OPEN -------------------------------------------------------------------


def test_open_rejects_without_calling(drive: Driver, clock: FakeClock) -> None:
    """OPEN rejects at once with CircuitOpenError and never runs the function."""
    b = make(clock)
    open_breaker(drive, b)
    ran = drive.ran
    clock.advance(3.0)
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    assert info.value.name == "dep"
    assert info.value.retry_after == pytest.approx(7.0)
    assert drive(b) == "rejected"
    assert drive.ran == ran
    assert b.metrics.rejected == 2


def test_open_duration_elapsed_moves_to_half_open(drive: Driver, clock: FakeClock) -> None:
    """After open_duration the state reads HALF_OPEN and a probe is admitted."""
    b = make(clock)
    open_breaker(drive, b)
    clock.advance(9.99)
    assert b.state is State.OPEN
    clock.advance(0.01)
    assert b.state is State.HALF_OPEN


# -- HALF_OPEN --------------------------------------------------------------


def test_probes_all_succeed_closes_with_fresh_window(drive: Driver, clock: FakeClock) -> None:
    """half_open_calls successful probes close it, with an empty window."""
    b = make(clock)
    open_breaker(drive, b)
    clock.advance(10)
    succeed(drive, b, 1)
    assert b.state is State.HALF_OPEN
    succeed(drive, b, 1)
    assert b.state is State.CLOSED
    assert b.metrics.calls == 0
    fail(drive, b, 3)  # a fresh window needs minimum_calls again
    assert b.state is State.CLOSED


def test_a_failed_probe_reopens(drive: Driver, clock: FakeClock) -> None:
    """Any failed probe sends it back to OPEN for another open_duration."""
    b = make(clock)
    open_breaker(drive, b)
    clock.advance(10)
    succeed(drive, b, 1)
    fail(drive, b, 1)
    assert b.state is State.OPEN
    clock.advance(9)
    assert drive(b) == "rejected"


def test_a_slow_probe_reopens_when_slow_calls_are_tracked(drive: Driver, clock: FakeClock) -> None:
    """With a slow-call threshold below 1.0, a slow probe counts as a failed one."""
    b = make(clock, slow_call_rate_threshold=0.5, slow_call_duration=1.0)
    open_breaker(drive, b)
    clock.advance(10)
    assert drive(b, takes=2.0) == "ok"
    assert b.state is State.OPEN


def test_open_duration_callable_gets_consecutive_openings(drive: Driver, clock: FakeClock) -> None:
    """open_duration(n) gets 1, 2, 3 on consecutive openings and 1 again after closing."""
    seen: list[int] = []

    def schedule(n: int) -> float:
        seen.append(n)
        return 5.0 * 2 ** (n - 1)

    b = make(clock, open_duration=schedule)
    seen.clear()  # the config check calls it once with 1
    open_breaker(drive, b)
    clock.advance(5)
    fail(drive, b, 1)  # probe fails: second opening, 10 s
    clock.advance(9.9)
    assert b.state is State.OPEN
    clock.advance(0.1)
    fail(drive, b, 1)  # third opening, 20 s
    assert b.metrics.consecutive_openings == 3
    clock.advance(20)
    succeed(drive, b, 2)
    assert b.state is State.CLOSED
    open_breaker(drive, b)
    assert seen == [1, 2, 3, 1]


def test_open_duration_callable_that_raises_later_keeps_last_value(
    drive: Driver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A schedule that fails at run time is logged and the last good duration is kept."""

    def schedule(n: int) -> float:
        if n > 1:
            raise ZeroDivisionError
        return 4.0

    b = make(clock, open_duration=schedule)
    open_breaker(drive, b)
    clock.advance(4)
    with caplog.at_level(logging.ERROR, logger="seawall.breaker"):
        fail(drive, b, 1)
    assert "open_duration(2)" in caplog.text
    assert b.state is State.OPEN
    clock.advance(4)
    assert b.state is State.HALF_OPEN


def test_exactly_half_open_calls_probes_are_admitted(clock: FakeClock) -> None:
    """With probes in flight, callers beyond half_open_calls are rejected."""
    b = make(clock, half_open_calls=3)
    for _ in range(4):
        with pytest.raises(Boom), b:
            raise Boom
    clock.advance(10)
    admitted = 0
    with b:
        admitted += 1
        with b:
            admitted += 1
            with b:
                admitted += 1
                with pytest.raises(CircuitOpenError) as info, b:
                    admitted += 1
                assert info.value.retry_after is None  # probes in flight: no schedule
    assert admitted == 3
    assert b.state is State.CLOSED


def test_a_probe_is_timed_from_its_own_admission(drive: Driver, clock: FakeClock) -> None:
    """A quiet HALF_OPEN (entered by a state read, e.g. a metrics scrape) does not age a probe."""
    b = make(clock, half_open_calls=1, half_open_max_wait=3.0)
    open_breaker(drive, b)
    clock.advance(10)
    assert b.state is State.HALF_OPEN  # read by a scrape; no traffic for a while
    clock.advance(60)
    permit = b._core.acquire()  # admitted 60 s into HALF_OPEN
    clock.advance(2.9)
    assert b.state is State.HALF_OPEN  # the next scrape: 2.9 s of its own 3
    b._core.on_success(permit, 2.9)
    assert b.state is State.CLOSED
    assert b.metrics.consecutive_openings == 0
    open_breaker(drive, b)
    clock.advance(10)
    assert b.state is State.HALF_OPEN
    clock.advance(60)
    assert drive(b, takes=2.9) == "ok"  # the same through each driver
    assert b.state is State.CLOSED


def test_a_late_probe_is_not_failed_for_an_earlier_ones_age(
    drive: Driver, clock: FakeClock
) -> None:
    """Probe 1 succeeded at t=10; probe 2, admitted at t=70, has its own 3 s."""
    b = make(clock, half_open_calls=2, half_open_max_wait=3.0)
    open_breaker(drive, b)
    clock.advance(10)
    assert drive(b) == "ok"
    clock.advance(60)
    permit = b._core.acquire()  # probe 2, still running
    clock.advance(2.9)
    assert b.state is State.HALF_OPEN
    b._core.on_success(permit, 2.9)
    assert b.state is State.CLOSED


def test_the_oldest_unfinished_probe_decides(clock: FakeClock) -> None:
    """Probes that end out of order: the one still running is timed from its admission."""
    b = make(clock, half_open_calls=3, half_open_max_wait=3.0)
    for _ in range(4):
        with pytest.raises(Boom), b:
            raise Boom
    clock.advance(10)
    first = b._core.acquire()  # hangs
    clock.advance(2)
    second = b._core.acquire()
    b._core.on_success(second, 0.0)  # ends first: the hung one keeps its start time
    assert b._core.probes_in_flight == 1
    clock.advance(0.9)
    assert b.state is State.HALF_OPEN
    clock.advance(0.1)  # 3 s after the first probe's admission
    assert b.state is State.OPEN
    b._core.on_success(first, 13.0)  # too late to count
    assert b.state is State.OPEN


def test_a_record_predicate_that_raises_counts_a_failure_and_keeps_the_error(
    drive: Driver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException) -> bool:
        raise KeyError("bug in the predicate")

    b = make(clock, record=broken, half_open_calls=1)
    with caplog.at_level(logging.ERROR, logger="seawall.breaker"):
        fail(drive, b, 4)  # the caller still sees Boom, not KeyError
    assert b.state is State.OPEN
    clock.advance(10)
    assert drive(b, raises=Boom()) == "failed"  # a probe: its slot is not left taken
    assert b.state is State.OPEN
    assert len([r for r in caplog.records if "predicate" in r.getMessage()]) == 1


def trip(b: CircuitBreaker, clock: FakeClock) -> None:
    """Open ``b`` with four failures and let its open duration pass (sync calls only)."""
    for _ in range(4):
        with contextlib.suppress(Boom):
            b.call(raise_boom)
    clock.advance(10)
    assert b.state is State.HALF_OPEN


def raise_boom() -> None:
    raise Boom


def test_a_probe_in_flight_holds_its_slot(drive: Driver, clock: FakeClock) -> None:
    """Exactly half_open_calls probes: this one, one more, and a third is refused."""
    b = make(clock, half_open_calls=2)
    trip(b, clock)

    def meanwhile() -> None:
        other = b._core.acquire()  # the second probe
        with pytest.raises(CircuitOpenError) as info:
            b.call(lambda: None)  # a third: no slot left
        assert info.value.retry_after is None  # probes in flight: no schedule
        b._core.on_success(other, 0.0)

    assert drive(b, during=meanwhile) == "ok"
    assert b.state is State.CLOSED  # both probes counted


def test_hung_probe_counts_as_failed_after_half_open_max_wait(
    drive: Driver, clock: FakeClock
) -> None:
    """A probe that outlives half_open_max_wait reopens the circuit; its late end counts for nothing."""
    b = make(clock, half_open_calls=1, half_open_max_wait=3.0)
    trip(b, clock)

    def hang() -> None:
        clock.advance(2.9)
        assert b.state is State.HALF_OPEN
        with pytest.raises(CircuitOpenError):
            b.call(lambda: None)  # the one slot is this probe's
        clock.advance(0.1)
        assert b.state is State.OPEN
        assert b.metrics.consecutive_openings == 2

    assert drive(b, during=hang) == "ok"  # the hung probe finally returns: too late
    assert b.state is State.OPEN


def test_stale_failure_does_not_reopen_or_take_a_probe_slot(
    drive: Driver, clock: FakeClock
) -> None:
    """A call admitted while CLOSED that fails after HALF_OPEN is ignored."""
    b = make(clock, half_open_calls=1)
    assert drive(b, raises=Boom(), during=lambda: trip(b, clock)) == "failed"
    assert b.state is State.HALF_OPEN
    b.call(lambda: None)  # the one probe slot is still free
    assert b.state is State.CLOSED


def test_stale_success_does_not_count_as_a_probe(drive: Driver, clock: FakeClock) -> None:
    """A call admitted while CLOSED that succeeds in HALF_OPEN does not close it."""
    b = make(clock, half_open_calls=1)
    assert drive(b, during=lambda: trip(b, clock)) == "ok"
    assert b.state is State.HALF_OPEN


def test_stale_failure_does_not_count_in_the_next_closed_window(
    drive: Driver, clock: FakeClock
) -> None:
    """A call started before an open/close cycle does not feed the fresh window."""
    b = make(clock)

    def cycle() -> None:
        trip(b, clock)
        b.call(lambda: None)
        b.call(lambda: None)
        assert b.state is State.CLOSED

    assert drive(b, raises=Boom(), during=cycle) == "failed"
    assert b.state is State.CLOSED
    assert b.metrics.calls == 0


def test_base_exceptions_free_a_probe_slot(drive: Driver, clock: FakeClock) -> None:
    """An interrupt (sync) or a cancellation (async) in a probe counts as neither."""
    b = make(clock, half_open_calls=1)
    trip(b, clock)
    error: BaseException = (
        asyncio.CancelledError() if "async" in drive.kind else KeyboardInterrupt()
    )
    assert drive(b, raises=error) == "failed"  # it went through, unchanged
    assert b.state is State.HALF_OPEN
    b.call(lambda: None)  # the slot is free again
    assert b.state is State.CLOSED


def test_half_open_max_wait_defaults_to_open_duration(clock: FakeClock) -> None:
    """Without half_open_max_wait, a hung probe is given open_duration."""
    b = make(clock, half_open_calls=1, open_duration=7.0)
    for _ in range(4):
        with pytest.raises(Boom), b:
            raise Boom
    clock.advance(7)
    b._core.acquire()
    clock.advance(6.9)
    assert b.state is State.HALF_OPEN
    clock.advance(0.1)
    assert b.state is State.OPEN


# -- generations -------------------------------------------------------------


def test_ignored_exceptions_count_as_neither(drive: Driver, clock: FakeClock) -> None:
    """An ignored exception propagates but is not a call of the window."""
    b = make(clock, ignore=Ignored)
    for _ in range(6):
        assert drive(b, raises=Ignored()) == "failed"
    assert b.metrics.calls == 0
    assert b.state is State.CLOSED


def test_ignore_wins_over_record(drive: Driver, clock: FakeClock) -> None:
    """An exception matching both record and ignore is ignored."""
    b = make(clock, record=(Boom, Ignored), ignore=Ignored)
    for _ in range(6):
        assert drive(b, raises=Ignored()) == "failed"
    assert b.metrics.calls == 0


def test_unrecorded_exceptions_count_as_success(drive: Driver, clock: FakeClock) -> None:
    """Exceptions that record does not match are successes (e.g. a 404 is an answer)."""
    b = make(clock, record=Boom)
    for _ in range(6):
        assert drive(b, raises=KeyError("missing")) == "failed"
    m = b.metrics
    assert (m.calls, m.failures) == (6, 0)


def test_record_predicate(drive: Driver, clock: FakeClock) -> None:
    """A predicate decides which exceptions are failures."""
    b = make(clock, record=lambda e: isinstance(e, Boom) and "5xx" in str(e))
    drive(b, raises=Boom("4xx"))
    drive(b, raises=Boom("5xx"))
    m = b.metrics
    assert (m.calls, m.failures) == (2, 1)


def test_force_open_rejects_until_reset(drive: Driver, clock: FakeClock) -> None:
    """FORCED_OPEN rejects everything, with no retry_after, until reset()."""
    b = make(clock)
    b.force_open()
    clock.advance(1000)
    assert b.state is State.FORCED_OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    assert info.value.retry_after is None
    assert drive(b) == "rejected"
    b.reset()
    assert drive(b) == "ok"


def test_disable_admits_and_records_nothing(drive: Driver, clock: FakeClock) -> None:
    """DISABLED lets every call through and keeps the window empty."""
    b = make(clock)
    b.disable()
    fail(drive, b, 20)
    assert b.state is State.DISABLED
    assert b.metrics.calls == 0
    b.reset()
    assert b.state is State.CLOSED


def test_reset_forgets_everything(drive: Driver, clock: FakeClock) -> None:
    """reset() from OPEN closes with an empty window and no openings."""
    b = make(clock)
    open_breaker(drive, b)
    b.reset()
    m = b.metrics
    assert (m.state, m.calls, m.consecutive_openings) == (State.CLOSED, 0, 0)
    succeed(drive, b, 1)


# -- time windows -------------------------------------------------------------


def test_time_window_forgets_failures_older_than_its_length(
    drive: Driver, clock: FakeClock
) -> None:
    """A TimeWindow only counts the calls of its last `seconds`."""
    b = make(clock, window=TimeWindow(10, buckets=10), minimum_calls=4)
    fail(drive, b, 3)
    clock.advance(10.5)
    assert b.metrics.calls == 0
    fail(drive, b, 3)
    assert b.state is State.CLOSED
    fail(drive, b, 1)
    assert b.state is State.OPEN


def test_time_window_rate_can_rise_as_successes_expire(drive: Driver, clock: FakeClock) -> None:
    """Old successes leaving a time window raise the rate; the next call decides."""
    b = make(clock, window=TimeWindow(10, buckets=10), minimum_calls=4)
    succeed(drive, b, 4)
    clock.advance(5)
    fail(drive, b, 3)  # 3 of 7
    assert b.state is State.CLOSED
    clock.advance(5.5)  # the four successes leave: 3 of 3 failed
    succeed(drive, b, 1)  # 3 of 4 = 75%
    assert b.state is State.OPEN


def test_an_hour_long_time_window(drive: Driver, clock: FakeClock) -> None:
    """A one-hour window keeps an hour of history at bucket granularity."""
    b = make(clock, window=TimeWindow(3600, buckets=60), minimum_calls=2)
    succeed(drive, b, 1)
    clock.advance(3000)
    fail(drive, b, 1)  # 1 of 2: 50%
    assert b.state is State.OPEN


# -- events --------------------------------------------------------------------


def test_events_name_the_rate_and_threshold(drive: Driver, clock: FakeClock) -> None:
    """StateChanged carries the rate that tripped it and the threshold."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    b = make(clock, listeners, failure_rate_threshold=0.75)
    succeed(drive, b, 1)
    fail(drive, b, 3)
    assert drive(b) == "rejected"
    opened = rec.of_type(StateChanged)
    assert len(opened) == 1
    e = opened[0]
    assert (e.name, e.old, e.new, e.reason) == ("dep", State.CLOSED, State.OPEN, "failure rate")
    assert (e.failure_rate, e.failure_rate_threshold, e.calls) == (0.75, 0.75, 4)
    rejected = rec.of_type(CallRejected)
    assert len(rejected) == 1
    assert rejected[0].retry_after == pytest.approx(10.0)
    clock.advance(10)
    succeed(drive, b, 2)
    moves = [(e.old, e.new) for e in rec.of_type(StateChanged)]
    assert moves == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_raising_listener_never_breaks_a_call(
    drive: Driver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged once; calls and other listeners go on."""
    listeners = Listeners()
    rec = RecordingListener()

    def broken(event: object) -> None:
        raise RuntimeError("exporter down")

    listeners.add(broken)
    listeners.add(rec)
    b = make(clock, listeners)
    with caplog.at_level(logging.ERROR, logger="seawall.events"):
        open_breaker(drive, b)
        assert drive(b) == "rejected"
        assert drive(b) == "rejected"
    assert len(rec.events) == 3
    logged = [r for r in caplog.records if r.name == "seawall.events"]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert str(logged[0].exc_info[1]) == "exporter down"


def test_shadow_mode_never_rejects_but_says_what_it_would_do(
    drive: Driver, clock: FakeClock
) -> None:
    """In shadow mode calls always run; events tell when it would have opened and rejected."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    b = make(clock, listeners, shadow=True)
    fail(drive, b, 4)
    assert b.state is State.OPEN
    assert b.shadow
    ran = drive.ran
    fail(drive, b, 3)  # would-be rejections: they run, and do not count
    assert drive.ran == ran + 3
    assert b.metrics.rejected == 3
    assert all(e.shadow for e in rec.events)
    assert [e.new for e in rec.of_type(StateChanged)] == [State.OPEN]
    assert len(rec.of_type(CallRejected)) == 3
    clock.advance(10)
    succeed(drive, b, 2)  # the probes decide, as they would when enforcing
    assert b.state is State.CLOSED


# -- drivers -----------------------------------------------------------------------


def test_nested_with_on_one_breaker(clock: FakeClock) -> None:
    """Nested with-blocks on the same breaker each record their own outcome."""
    b = make(clock)
    with pytest.raises(Boom), b:
        with b:
            pass
        raise Boom
    m = b.metrics
    assert (m.calls, m.failures) == (2, 1)


def test_decorator_keeps_metadata_and_works_on_methods(clock: FakeClock) -> None:
    """The decorator wraps functions and methods and keeps their name and doc."""
    b = make(clock)

    class Client:
        @b
        def get(self, key: str) -> str:
            """Fetch a key."""
            return key.upper()

    assert Client().get("x") == "X"
    assert Client.get.__name__ == "get"
    assert Client.get.__doc__ == "Fetch a key."
    assert b.metrics.calls == 1


def test_repr_names_breaker_and_state(clock: FakeClock) -> None:
    """repr shows the name and state, for logs and debuggers."""
    b = make(clock)
    assert repr(b) == "<CircuitBreaker 'dep' CLOSED>"
