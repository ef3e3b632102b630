"""The Dependency pipeline: order of policies, criticality, fallbacks, degraded marks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from seawall import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    CountWindow,
    DeadlineExceeded,
    DependencyUnavailable,
    State,
    ThreadBulkhead,
)
from seawall.core.backoff import Backoff
from seawall.dependency import Criticality, Dependency
from seawall.events import CallCompleted, FallbackFailed, FallbackUsed, Listeners
from seawall.fallback import Fallback, MemoryStaleStore, track_degradations
from seawall.retry import Retry
from seawall.testing import FakeClock, RecordingListener
from seawall.timeouts import deadline, remaining


class HTTPError(Exception):
    """An error carrying an HTTP status, as clients raise them."""

    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        if retry_after is not None:
            self.retry_after = retry_after


def quick_retry(clock: FakeClock, attempts: int = 3) -> Retry:
    return Retry(
        attempts=attempts, backoff=Backoff.constant(0.5), clock=clock, listeners=Listeners()
    )


def breaker(clock: FakeClock, **kw: Any) -> CircuitBreaker:
    options: dict[str, Any] = {"window": CountWindow(10), "minimum_calls": 3, "open_duration": 30.0}
    options.update(kw)
    return CircuitBreaker("pay", clock=clock, listeners=Listeners(), **options)


class Flaky:
    """A downstream that fails with the given errors, then answers."""

    def __init__(self, *errors: BaseException, answer: object = "ok") -> None:
        self.errors = list(errors)
        self.answer = answer
        self.calls = 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.answer

    async def async_(self, *args: object) -> object:
        return self(*args)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- composition ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retries_pass_through_the_breaker(mode: str, clock: FakeClock) -> None:
    """Every attempt is a call of the breaker's window, so retries open it sooner."""
    b = breaker(clock)
    dep = Dependency("pay", retry=quick_retry(clock), breaker=b, listeners=Listeners())
    down = Flaky(*[ConnectionError()] * 3)
    with pytest.raises(DependencyUnavailable) as info:
        if mode == "sync":
            dep.call_sync(down)
        else:
            run(dep.call(down.async_))
    assert down.calls == 3
    assert isinstance(info.value.cause, ConnectionError)
    assert b.state is State.OPEN  # three failed attempts = minimum_calls
    assert clock.sleeps == [0.5, 0.5]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_open_breaker_is_never_retried(mode: str, clock: FakeClock) -> None:
    """A rejection surfaces at once: no call, no sleep, retry_after from the breaker."""
    b = breaker(clock)
    b.force_open()
    b.reset()
    for _ in range(3):
        with pytest.raises(ConnectionError), b:
            raise ConnectionError
    clock.advance(12)
    dep = Dependency("pay", retry=quick_retry(clock), breaker=b, listeners=Listeners())
    fn = Flaky()
    with pytest.raises(DependencyUnavailable) as info:
        if mode == "sync":
            dep.call_sync(fn)
        else:
            run(dep.call(fn.async_))
    assert fn.calls == 0
    assert clock.sleeps == []
    assert isinstance(info.value.cause, CircuitOpenError)
    assert info.value.retry_after == pytest.approx(18.0)


def test_a_full_bulkhead_is_not_retried_nor_counted_by_the_breaker(clock: FakeClock) -> None:
    """BulkheadFullError surfaces at once and leaves the breaker's window untouched."""
    b = breaker(clock)
    bh = Bulkhead("pay", max_concurrent=1, listeners=Listeners())
    dep = Dependency("pay", retry=quick_retry(clock), breaker=b, bulkhead=bh, listeners=Listeners())
    gate = asyncio.Event()

    async def hold() -> str:
        await gate.wait()
        return "held"

    async def main() -> None:
        holder = asyncio.create_task(dep.call(hold))
        await asyncio.sleep(0)
        with pytest.raises(DependencyUnavailable) as info:
            await dep.call(hold)
        assert type(info.value.cause).__name__ == "BulkheadFullError"
        gate.set()
        assert await holder == "held"

    run(main())
    assert clock.sleeps == []
    m = b.metrics
    assert (m.calls, m.failures) == (1, 0)
    assert bh.in_use == 0


def test_transient_failure_then_success_is_an_answer(clock: FakeClock) -> None:
    dep = Dependency("pay", retry=quick_retry(clock), listeners=Listeners())
    fn = Flaky(HTTPError(503), HTTPError(502), answer={"id": 7})
    assert run(dep.call(fn.async_)) == {"id": 7}
    assert fn.calls == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("error", [ValueError("bug"), HTTPError(400), HTTPError(404)])
def test_errors_that_are_not_outages_propagate_unchanged(
    mode: str, error: Exception, clock: FakeClock
) -> None:
    """A 4xx or a bug is an answer or a defect: not retried, not wrapped, no fallback."""
    dep = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        retry=quick_retry(clock),
        fallback=Fallback.value([]),
        listeners=Listeners(),
    )
    fn = Flaky(error)
    with pytest.raises(type(error)) as info:
        if mode == "sync":
            dep.call_sync(fn)
        else:
            run(dep.call(fn.async_))
    assert info.value is error
    assert fn.calls == 1


def test_critical_failure_carries_the_downstreams_retry_after(clock: FakeClock) -> None:
    """A 503 with Retry-After becomes DependencyUnavailable(retry_after=...)."""
    dep = Dependency("pay", retry=quick_retry(clock, attempts=1), listeners=Listeners())
    with pytest.raises(DependencyUnavailable) as info:
        dep.call_sync(Flaky(HTTPError(503, retry_after=7.0)))
    assert info.value.name == "pay"
    assert info.value.retry_after == 7.0
    assert isinstance(info.value.__cause__, HTTPError)


# -- timeouts -----------------------------------------------------------------


def test_each_attempt_is_limited_by_the_timeout() -> None:
    """A hung attempt is cut at `timeout`, retried, then reported unavailable."""
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    dep = Dependency(
        "pay",
        timeout=0.02,
        retry=Retry(attempts=2, backoff=Backoff.constant(0.0), listeners=Listeners()),
        listeners=Listeners(),
    )

    async def main() -> None:
        async with asyncio.timeout(5):
            with pytest.raises(DependencyUnavailable) as info:
                await dep.call(hang)
        assert isinstance(info.value.cause, DeadlineExceeded)

    run(main())
    assert calls == 2


def test_a_retried_error_does_not_chain_to_the_first_one() -> None:
    """Each attempt's error stands alone, as with Retry.call_async: no 'during handling of'."""
    dep = Dependency(
        "pay",
        retry=Retry(attempts=3, backoff=Backoff.constant(0.0), listeners=Listeners()),
        listeners=Listeners(),
    )
    flaky = Flaky(ConnectionError("first"), ConnectionError("second"), ConnectionError("third"))
    with pytest.raises(DependencyUnavailable) as info:
        run(dep.call(flaky.async_))
    assert str(info.value.cause) == "third"
    assert info.value.cause is not None
    assert info.value.cause.__context__ is None


def test_the_ambient_deadline_bounds_a_call_without_timeout() -> None:
    async def hang() -> None:
        await asyncio.sleep(10)

    dep = Dependency("pay", listeners=Listeners())

    async def main() -> None:
        async with asyncio.timeout(5):
            with deadline(0.02), pytest.raises(DeadlineExceeded) as info:
                # Set, not enforced, by the caller (as a middleware would):
                # the dependency's attempt enforces it, and says whose time ran out.
                await dep.call(hang)
            assert info.value.name == "pay"
            with pytest.raises(DeadlineExceeded) as outer:
                async with deadline(0.02, name="request"):
                    # Enforced by the caller too: the caller's scope ends first
                    # and reports its own expiry.
                    await dep.call(hang)
            assert outer.value.name == "request"

    run(main())


def test_sync_calls_get_their_timeout_as_the_ambient_deadline() -> None:
    """Sync code cannot be interrupted: it reads its budget from remaining()."""
    dep = Dependency("db", timeout=2.0, listeners=Listeners())
    seen = dep.call_sync(remaining)
    assert seen is not None
    assert 1.5 < seen <= 2.0
    with deadline(0.5):
        seen = dep.call_sync(remaining)
    assert seen is not None
    assert seen <= 0.5


def test_sync_call_past_the_deadline_is_not_started() -> None:
    fn = Flaky()
    dep = Dependency("db", listeners=Listeners())
    with deadline(0.0), pytest.raises(DeadlineExceeded):
        dep.call_sync(fn)
    assert fn.calls == 0


# -- fallbacks ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_value_fallback_is_marked_degraded(mode: str, clock: FakeClock) -> None:
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    dep = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.value(("popular",)),
        clock=clock,
        listeners=listeners,
    )
    down = Flaky(ConnectionError("refused"))
    with track_degradations() as record:
        result = dep.call_sync_result(down) if mode == "sync" else run(dep.call_result(down.async_))
    assert result.value == ("popular",)
    assert result.degraded is not None
    assert (result.degraded.dependency, result.degraded.kind) == ("recs", "value")
    assert result.degraded.reason == "ConnectionError"
    assert record.dependencies == ["recs"]
    used = rec.of_type(FallbackUsed)
    assert [(e.name, e.kind) for e in used] == [("recs", "value")]
    assert [e.outcome for e in rec.of_type(CallCompleted)] == ["fallback"]


def test_fresh_answers_are_not_marked(clock: FakeClock) -> None:
    dep = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.value([]),
        listeners=Listeners(),
    )
    with track_degradations() as record:
        result = dep.call_sync_result(Flaky(answer=[1, 2]))
    assert result.value == [1, 2]
    assert result.degraded is None
    assert not record


def test_callable_fallback_sync_and_async(clock: FakeClock) -> None:
    seen: list[BaseException] = []

    def by_error(exc: BaseException) -> str:
        seen.append(exc)
        return f"fallback for {type(exc).__name__}"

    async def by_error_async(exc: BaseException) -> str:
        return by_error(exc)

    for fb in (by_error, by_error_async):
        dep = Dependency(
            "recs",
            criticality=Criticality.DEGRADABLE,
            fallback=Fallback.call(fb),
            listeners=Listeners(),
        )
        assert run(dep.call(Flaky(TimeoutError()).async_)) == "fallback for TimeoutError"
    assert len(seen) == 2


def test_async_fallback_in_sync_call_is_reported(clock: FakeClock) -> None:
    async def by_error_async(exc: BaseException) -> str:
        return "never"

    dep = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.call(by_error_async),
        listeners=Listeners(),
    )
    with pytest.raises(DependencyUnavailable) as info:
        dep.call_sync(Flaky(ConnectionError()))
    assert any("use call()" in note for note in info.value.__notes__)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_call_whose_fallback_failed_ends_as_its_failure(mode: str) -> None:
    """Counted once, with the failure's outcome: the caller got no fallback answer."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec, CallCompleted)

    def broken(exc: BaseException) -> str:
        raise KeyError("cache miss")

    dep = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.call(broken),
        listeners=listeners,
    )
    flaky = Flaky(ConnectionError())
    with pytest.raises(DependencyUnavailable):
        if mode == "sync":
            dep.call_sync(flaky)
        else:
            run(dep.call(flaky.async_))
    assert [e.outcome for e in rec.of_type(CallCompleted)] == ["failure"]


def test_a_listener_added_during_a_call_gets_no_made_up_duration() -> None:
    listeners = Listeners()
    rec = RecordingListener()
    dep = Dependency("recs", listeners=listeners)

    def adds_a_listener() -> str:
        listeners.add(rec, CallCompleted)
        return "ok"

    assert dep.call_sync(adds_a_listener) == "ok"  # began unobserved: not reported
    assert rec.of_type(CallCompleted) == []
    assert dep.call_sync(lambda: "ok") == "ok"
    (event,) = rec.of_type(CallCompleted)
    assert 0.0 <= event.duration < 1.0


def test_a_failing_fallback_is_reported_not_swallowed(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)

    def broken(exc: BaseException) -> str:
        raise KeyError("cache miss")

    dep = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.call(broken),
        listeners=listeners,
    )
    with pytest.raises(DependencyUnavailable) as info:
        dep.call_sync(Flaky(ConnectionError()))
    assert isinstance(info.value.cause, ConnectionError)
    assert "cache miss" in info.value.__notes__[0]
    failed = rec.of_type(FallbackFailed)
    assert len(failed) == 1
    assert isinstance(failed[0].error, KeyError)
    assert caplog.records == [] or all(r.levelno < logging.ERROR for r in caplog.records)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stale_fallback_serves_last_good_value_until_max_stale(mode: str, clock: FakeClock) -> None:
    """Fresh value, then failures: stale with its age until max_stale, then the failure."""
    store = MemoryStaleStore(clock=clock)
    dep = Dependency(
        "catalog",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.stale(60, store=store),
        clock=clock,
        listeners=Listeners(),
    )
    price = {"sku": 1, "cents": 999}

    def call(fn: Flaky, sku: int) -> Any:
        if mode == "sync":
            return dep.call_sync_result(fn, sku)
        return run(dep.call_result(fn.async_, sku))

    fresh = Flaky(answer=price)
    assert call(fresh, 1).degraded is None
    clock.advance(20)
    stale = call(Flaky(ConnectionError()), 1)
    assert stale.value == price
    assert stale.degraded is not None
    assert stale.degraded.kind == "stale"
    assert stale.degraded.age == pytest.approx(20)
    with pytest.raises(DependencyUnavailable):  # another key has no stale value
        call(Flaky(ConnectionError()), 2)
    clock.advance(40.5)
    with pytest.raises(DependencyUnavailable) as info:
        call(Flaky(ConnectionError()), 1)
    assert "60.5s old" in info.value.__notes__[0]


def test_stale_key_function(clock: FakeClock) -> None:
    class Client:
        pass

    dep = Dependency(
        "catalog",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.stale(60, key=lambda client, sku: f"sku:{sku}"),
        clock=clock,
        listeners=Listeners(),
    )
    dep.call_sync(Flaky(answer="v1"), Client(), 5)
    assert dep.call_sync(Flaky(ConnectionError()), Client(), 5) == "v1"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stale_fallback_keeps_only_the_results_worth_remembering(
    mode: str, clock: FakeClock
) -> None:
    """A flood of "not found" answers must not evict the products a fallback will need."""
    store = MemoryStaleStore(max_entries=3, clock=clock)
    dep = Dependency(
        "catalog",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.stale(60, store=store, remember=lambda found: found is not None),
        clock=clock,
        listeners=Listeners(),
    )

    def call(fn: Flaky, sku: str) -> Any:
        if mode == "sync":
            return dep.call_sync(fn, sku)
        return run(dep.call(fn.async_, sku))

    assert call(Flaky(answer={"sku": "a"}), "a") == {"sku": "a"}
    for n in range(10):  # ids a client made up: answered, never stored
        assert call(Flaky(answer=None), f"made-up-{n}") is None
    assert len(store) == 1
    assert call(Flaky(ConnectionError()), "a") == {"sku": "a"}  # still there to serve


def test_a_remember_predicate_that_raises_stores_nothing_and_fails_nothing(
    clock: FakeClock,
) -> None:
    store = MemoryStaleStore(clock=clock)

    def broken(value: object) -> bool:
        raise RuntimeError("bug in the predicate")

    dep = Dependency(
        "catalog",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.stale(60, store=store, remember=broken),
        clock=clock,
        listeners=Listeners(),
    )
    assert dep.call_sync(Flaky(answer=1), "a") == 1
    assert run(dep.call(Flaky(answer=2).async_, "b")) == 2
    assert len(store) == 0
    with pytest.raises(ConfigError, match="remember must be callable"):
        Fallback.stale(60, remember=3)  # type: ignore[arg-type]


# -- the seed example ---------------------------------------------------------------


class Shop:
    """process_order from the seed article: inventory and payment at once, notify in background."""

    def __init__(self, tmp_path: Any, clock: FakeClock) -> None:
        self.gate_payment = asyncio.Event()
        self.gate_notify = asyncio.Event()
        self.payment_calls = self.inventory_calls = self.notified = 0
        self.block_payment = False
        self.payment = Dependency(
            "payment",
            timeout=5,
            bulkhead=Bulkhead("payment", max_concurrent=2, listeners=Listeners()),
            listeners=Listeners(),
        )
        self.inventory = Dependency(
            "inventory",
            timeout=5,
            bulkhead=Bulkhead("inventory", max_concurrent=10, listeners=Listeners()),
            listeners=Listeners(),
        )
        from seawall.outbox import Outbox

        self.outbox = Outbox(
            tmp_path / "notify.db",
            deliver=self._deliver,
            synchronous="normal",
            listeners=Listeners(),
        )
        self.notification = Dependency(
            "notification",
            criticality=Criticality.BACKGROUND,
            bulkhead=Bulkhead("notification", max_concurrent=1, listeners=Listeners()),
            outbox=self.outbox,
            listeners=Listeners(),
        )

    async def _deliver(self, entry: Any) -> None:
        await self.gate_notify.wait()  # the notification service hangs
        self.notified += 1

    async def charge(self, order: int) -> str:
        self.payment_calls += 1
        if self.block_payment:
            await self.gate_payment.wait()
        return f"charge-{order}"

    async def reserve(self, order: int) -> str:
        self.inventory_calls += 1
        await asyncio.sleep(0)
        return f"reservation-{order}"

    async def process_order(self, order: int) -> tuple[str, str]:
        reservation, charge = await asyncio.gather(
            self.inventory.call(self.reserve, order), self.payment.call(self.charge, order)
        )
        await self.notification.send_async("order-confirmed", {"order": order})
        return reservation, charge


def test_seed_example_notification_stuck_does_not_delay_orders(
    tmp_path: Any, clock: FakeClock
) -> None:
    """With every notification delivery hanging, all orders still complete."""
    shop = Shop(tmp_path, clock)

    async def main() -> None:
        await shop.outbox.start_async()
        try:
            notify = shop.notification.bulkhead
            assert notify is not None
            async with asyncio.timeout(20):
                results = [await shop.process_order(0)]
                while notify.in_use < 1:  # the first delivery hangs, holding the one permit
                    await asyncio.sleep(0.01)
                for i in range(1, 20):
                    started = time.monotonic()
                    results.append(await shop.process_order(i))
                    assert time.monotonic() - started < 1.0  # no order waits on delivery
                    assert notify.in_use == 1  # the pool stays saturated throughout
            assert results[3] == ("reservation-3", "charge-3")
            assert shop.notified == 0  # still stuck
            assert shop.outbox.depth == 20
            shop.gate_notify.set()
            assert await shop.outbox.flush_async(10) == 0
        finally:
            await shop.outbox.stop_async()

    run(main())
    assert shop.notified == 20
    shop.outbox.close()


def test_seed_example_saturated_payment_pushes_back_on_payment_only(
    tmp_path: Any, clock: FakeClock
) -> None:
    """Payment's pool full: payment calls are refused at once, inventory calls still pass."""
    shop = Shop(tmp_path, clock)
    shop.block_payment = True

    async def main() -> list[Any]:
        async with asyncio.timeout(20):
            orders = [asyncio.create_task(shop.process_order(i)) for i in range(5)]
            for _ in range(5):
                await asyncio.sleep(0)
            refused = [t for t in orders if t.done()]
            assert len(refused) == 3  # two hold the payment permits
            assert shop.inventory_calls == 5  # every inventory call went through
            shop.gate_payment.set()
            return await asyncio.gather(*orders, return_exceptions=True)

    results = run(main())
    unavailable = [r for r in results if isinstance(r, DependencyUnavailable)]
    assert len(unavailable) == 3
    assert all(r.name == "payment" for r in unavailable)
    assert sum(isinstance(r, tuple) for r in results) == 2
    assert shop.payment_calls == 2
    shop.outbox.close()


# -- background and configuration ----------------------------------------------------


def test_background_deliveries_go_through_the_breaker(tmp_path: Any, clock: FakeClock) -> None:
    """Failed deliveries open the breaker; then the outbox is refused without a call."""
    from seawall.outbox import Outbox

    attempts = 0

    def deliver(entry: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("notification service down")

    b = breaker(clock, minimum_calls=2)
    outbox = Outbox(
        tmp_path / "n.db",
        deliver=deliver,
        synchronous="normal",
        backoff_initial=0.01,
        backoff_maximum=0.02,
        clock=clock,
        listeners=Listeners(),
    )
    dep = Dependency(
        "notification",
        criticality=Criticality.BACKGROUND,
        breaker=b,
        bulkhead=ThreadBulkhead("notification", max_concurrent=2, listeners=Listeners()),
        outbox=outbox,
        listeners=Listeners(),
    )
    ids = [dep.send("sent", {"n": i}) for i in range(3)]
    assert all(ids)
    assert outbox.depth == 3
    for _ in range(3):
        outbox.deliver_due()
        clock.advance(1)
    assert b.state is State.OPEN
    assert attempts == 2  # the third delivery was refused by the open breaker
    assert outbox.depth == 3
    outbox.close()


def test_background_deliveries_refused_by_the_breaker_are_not_attempts(
    tmp_path: Any, clock: FakeClock
) -> None:
    """An open breaker holds entries back; it never dead-letters what was never sent."""
    from seawall.outbox import Outbox

    delivered: list[Any] = []
    outbox = Outbox(
        tmp_path / "n.db",
        deliver=delivered.append,
        synchronous="normal",
        max_attempts=2,
        backoff_initial=0.01,
        backoff_maximum=60.0,
        clock=clock,
        listeners=Listeners(),
    )
    b = breaker(clock)
    dep = Dependency(
        "notification",
        criticality=Criticality.BACKGROUND,
        breaker=b,
        outbox=outbox,
        listeners=Listeners(),
    )
    b.force_open()
    dep.send("sent", {"n": 1})
    for _ in range(5):
        assert outbox.deliver_due() == 0
        clock.advance(120)
    assert (outbox.depth, outbox.dead) == (1, 0)  # five refusals, no attempt counted
    b.reset()
    assert outbox.deliver_due() == 1
    assert len(delivered) == 1
    outbox.close()


def test_background_dependency_refuses_inline_calls(tmp_path: Any) -> None:
    from seawall.outbox import Outbox

    outbox = Outbox(tmp_path / "n.db", deliver=lambda e: None, listeners=Listeners())
    dep = Dependency("n", criticality=Criticality.BACKGROUND, outbox=outbox, listeners=Listeners())
    with pytest.raises(TypeError, match="use send"):
        dep.call_sync(print)
    with pytest.raises(TypeError, match="use send"):
        dep(print)
    outbox.close()
    with pytest.raises(TypeError, match="for BACKGROUND dependencies"):
        Dependency("p", listeners=Listeners()).send("t", {})


def test_wrong_bulkhead_kind_is_a_clear_error() -> None:
    dep = Dependency("p", bulkhead=ThreadBulkhead("p", max_concurrent=1), listeners=Listeners())

    async def fn() -> None:
        pass

    with pytest.raises(TypeError, match="needs a Bulkhead"):
        run(dep.call(fn))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"criticality": Criticality.DEGRADABLE}, "fallback is required for a DEGRADABLE"),
        ({"fallback": Fallback.value(1)}, "fallback must be None for a CRITICAL"),
        ({"criticality": Criticality.BACKGROUND}, "outbox is required for a BACKGROUND"),
        ({"criticality": "critical"}, "criticality must be a Criticality, got 'critical'"),
        ({"timeout": 0}, "timeout must be a finite number of seconds > 0, got 0"),
        ({"timeout": -1.0}, "timeout must be a finite number of seconds > 0, got -1.0"),
        ({"retry": 3}, "retry must be a Retry, got 3"),
        ({"breaker": "pay"}, "breaker must be a CircuitBreaker, got 'pay'"),
        (
            {"bulkhead": 10},
            "bulkhead must be a Bulkhead or ThreadBulkhead or AdaptiveLimit, got 10",
        ),
        ({"unavailable_on": 5}, "unavailable_on must be callable, got 5"),
    ],
)
def test_bad_configuration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Dependency("dep", **options)
    assert message in str(info.value)


def test_decorator_and_retry_events_use_the_dependency_name(clock: FakeClock) -> None:
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    retry = Retry(attempts=2, backoff=Backoff.constant(0.1), clock=clock, listeners=listeners)
    dep = Dependency("inventory", retry=retry, listeners=listeners)
    fn = Flaky(ConnectionError())

    @dep
    def reserve(sku: str) -> object:
        return fn(sku)

    assert reserve("a") == "ok"
    scheduled = [e for e in rec.events if type(e).__name__ == "RetryScheduled"]
    assert [e.name for e in scheduled] == ["inventory"]
    assert [e.outcome for e in rec.of_type(CallCompleted)] == ["success"]


def test_without_retry_shares_every_other_policy(clock: FakeClock) -> None:
    b = breaker(clock)
    dep = Dependency("pay", retry=quick_retry(clock), breaker=b, listeners=Listeners())
    once = dep.without_retry()
    assert once.config.retry is None
    assert once.breaker is b
    fn = Flaky(ConnectionError(), ConnectionError())
    with pytest.raises(DependencyUnavailable):
        once.call_sync(fn)
    assert fn.calls == 1  # not retried
    assert b.metrics.failures == 1  # but counted by the shared breaker
    assert dep.call_sync(fn) == "ok"  # the original still retries
    assert Dependency("x", listeners=Listeners()).without_retry().name == "x"


def test_a_spent_deadline_starts_nothing_and_spares_the_breaker() -> None:
    b = CircuitBreaker("pay", window=CountWindow(10), minimum_calls=1, listeners=Listeners())
    dep = Dependency("pay", timeout=1.0, breaker=b, listeners=Listeners())
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1

    async def main() -> None:
        with deadline(0.0), pytest.raises(DeadlineExceeded):
            await dep.call(fn)

    run(main())
    assert calls == 0
    assert b.metrics.calls == 0


def test_expiry_counts_against_the_breaker_only_when_its_own_timeout_bound() -> None:
    """Cut short by the caller's tighter deadline: neither success nor failure."""
    b = CircuitBreaker("pay", window=CountWindow(10), minimum_calls=5, listeners=Listeners())
    dep = Dependency("pay", timeout=0.02, breaker=b, listeners=Listeners())

    async def hang() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        async with asyncio.timeout(5):
            with deadline(0.01), pytest.raises(DeadlineExceeded):
                await dep.call(hang)  # the caller's 10 ms bound, not our 20 ms
            assert b.metrics.calls == 0
            with pytest.raises(DependencyUnavailable):
                await dep.call(hang)  # our own 20 ms bound: the dependency is slow
            assert (b.metrics.calls, b.metrics.failures) == (1, 1)

    run(main())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_wait_for_a_permit_is_bounded_by_the_attempt_timeout(mode: str) -> None:
    """A full bulkhead with a long max_wait cannot hold an attempt past its timeout."""
    b = CircuitBreaker("pay", window=CountWindow(10), minimum_calls=1, listeners=Listeners())
    bulkhead: Bulkhead | ThreadBulkhead
    if mode == "sync":
        bulkhead = ThreadBulkhead("pay", max_concurrent=1, max_wait=5.0, listeners=Listeners())
        bulkhead.acquire()
    else:
        bulkhead = Bulkhead("pay", max_concurrent=1, max_wait=5.0, listeners=Listeners())
    dep = Dependency("pay", timeout=0.05, breaker=b, bulkhead=bulkhead, listeners=Listeners())

    async def main() -> float:
        async with asyncio.timeout(3):
            await bulkhead.acquire()  # type: ignore[misc]
            start = time.monotonic()
            with pytest.raises(DependencyUnavailable) as info:
                await dep.call(Flaky().async_)
            assert isinstance(info.value.cause, BulkheadFullError)
            return time.monotonic() - start

    if mode == "sync":
        start = time.monotonic()
        with pytest.raises(DependencyUnavailable) as info:
            dep.call_sync(Flaky())
        assert isinstance(info.value.cause, BulkheadFullError)
        waited = time.monotonic() - start
    else:
        waited = run(main())
    assert waited < 1.0
    assert b.metrics.calls == 0  # a refusal says nothing about payment's health


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stale_store_that_cannot_keep_a_value_never_fails_the_call(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenStore(MemoryStaleStore):
        def put(self, key: str, value: Any) -> None:
            raise OSError("disk full")

        async def aput(self, key: str, value: Any) -> None:
            raise OSError("disk full")

    dep = Dependency(
        "prices",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.stale(max_stale=60, store=BrokenStore()),
        listeners=Listeners(),
    )
    with caplog.at_level(logging.ERROR, logger="seawall.dependency"):
        for _ in range(3):
            if mode == "sync":
                assert dep.call_sync(Flaky(answer=9.5)) == 9.5
            else:
                assert run(dep.call(Flaky(answer=9.5).async_)) == 9.5
    assert len([r for r in caplog.records if "stale store" in r.getMessage()]) == 1


def test_an_attempt_whose_time_went_on_waiting_for_a_permit_is_not_started() -> None:
    """Handed a permit after its deadline: give it back; no call, no failure on the breaker."""
    b = CircuitBreaker("pay", window=CountWindow(10), minimum_calls=1, listeners=Listeners())
    bulkhead = Bulkhead("pay", max_concurrent=1, max_wait=5.0, listeners=Listeners())
    dep = Dependency("pay", timeout=0.1, breaker=b, bulkhead=bulkhead, listeners=Listeners())
    gate = asyncio.Event()
    started: list[str] = []

    async def holder() -> str:
        await gate.wait()
        time.sleep(0.15)  # keeps the loop busy past the waiter's deadline, then frees the permit
        return "held"

    async def late() -> str:
        started.append("late")
        return "too late"

    async def main() -> list[Any]:
        async with asyncio.timeout(5):
            first = asyncio.create_task(dep.call(holder))
            await asyncio.sleep(0)
            second = asyncio.create_task(dep.call(late))
            await asyncio.sleep(0.03)
            gate.set()
            return await asyncio.gather(first, second, return_exceptions=True)

    held, refused = run(main())
    assert held == "held"
    assert isinstance(refused, DependencyUnavailable)
    assert isinstance(refused.cause, DeadlineExceeded)
    assert started == []
    assert (b.metrics.calls, b.metrics.failures) == (1, 0)
    assert bulkhead.in_use == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("budget", [0.0, 0.0001])
def test_a_deadline_the_caller_spent_is_not_the_dependency_being_unavailable(
    mode: str, budget: float
) -> None:
    """A caller's tiny deadline ends as DeadlineExceeded (a 504), never a 503 naming the dependency.

    Retried or not, with a breaker or not: the breaker is not told, and a
    degradable dependency still answers from its fallback.
    """
    b = CircuitBreaker("prices", window=CountWindow(10), minimum_calls=1, listeners=Listeners())
    critical = Dependency(
        "prices",
        timeout=5.0,
        breaker=b,
        retry=Retry(attempts=2, backoff=Backoff.constant(0.0), listeners=Listeners()),
        listeners=Listeners(),
    )
    degradable = Dependency(
        "recs",
        criticality=Criticality.DEGRADABLE,
        timeout=5.0,
        fallback=Fallback.value(["popular"]),
        listeners=Listeners(),
    )
    fn = Flaky(answer=1)

    def call(dep: Dependency) -> Any:
        if mode == "sync":
            return dep.call_sync(fn)

        async def main() -> Any:
            await asyncio.sleep(0.001)  # past a 0.1 ms budget before the call starts
            return await dep.call(fn.async_)

        return run(main())

    stale = Dependency(
        "product",
        criticality=Criticality.DEGRADABLE,
        timeout=5.0,
        fallback=Fallback.stale(60),
        listeners=Listeners(),
    )
    with deadline(budget):
        time.sleep(0.001)
        with pytest.raises(DeadlineExceeded):
            call(critical)
        assert call(degradable) == ["popular"]
        # A fallback with nothing to give: still the caller's deadline, not unavailability.
        with pytest.raises(DeadlineExceeded) as info:
            call(stale)
        assert "could not answer" in info.value.__notes__[-1]
    assert fn.calls == 0
    assert b.metrics.calls == 0
