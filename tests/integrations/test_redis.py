"""The Redis stores against a real redis-server: breaker sharing, budget, stale cache, keys."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio

from seawall import CircuitBreaker, CircuitOpenError, ConfigError, CountWindow, State, TimeWindow
from seawall.core.budget import Budget
from seawall.events import Listeners, StateChanged
from seawall.fallback import AsyncStaleStore, StaleStore
from seawall.integrations.redis import (
    AsyncRedisBreakerStore,
    AsyncRedisStaleStore,
    RedisBreakerStore,
    RedisRetryBudget,
    RedisStaleStore,
    StoreRecovered,
    StoreUnavailable,
)
from seawall.testing import FakeClock, RecordingListener
from tests.servers import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.servers import RedisServer


# An open duration short enough to wait out: the fleet's periods run on Redis's real clock.
SHORT = 0.1


class Boom(Exception):
    pass


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def stores(redis_server: RedisServer, ns: str) -> Iterator[Callable[..., RedisBreakerStore]]:
    """Build breaker stores (one per "replica") on the session's Redis; all stopped after."""
    made: list[RedisBreakerStore] = []

    def make(**kw: Any) -> RedisBreakerStore:
        kw.setdefault("namespace", ns)
        kw.setdefault("listeners", Listeners())
        client = redis.Redis.from_url(redis_server.url)
        try:
            store = RedisBreakerStore(client, **kw)
        finally:
            client.close()  # the store builds its own pool from the client's settings
        made.append(store)
        return store

    yield make
    for store in made:
        store.stop()


def breaker(clock: FakeClock | None = None, name: str = "pay", **kw: Any) -> CircuitBreaker:
    options: dict[str, Any] = {
        "window": CountWindow(10),
        "minimum_calls": 4,
        "open_duration": 10.0,
        "half_open_calls": 1,
    }
    options.update(kw)
    return CircuitBreaker(name, clock=clock, listeners=Listeners(), **options)


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom), b:
            raise Boom


def succeed(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        b.call(lambda: None)


def rejected(b: CircuitBreaker) -> bool:
    try:
        b.call(lambda: None)
    except CircuitOpenError:
        return True
    return False


# -- the fleet window -----------------------------------------------------------


def test_counts_from_two_replicas_aggregate_in_the_fleet_window(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """Each replica's outcomes since it started sharing reach one fleet window."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(minimum_calls=100), breaker(minimum_calls=100)
    succeed(pay_a, 1)  # before sharing: stays local
    a.share(pay_a)
    b.share(pay_b)
    succeed(pay_a, 3)
    fail(pay_a, 2)
    succeed(pay_b, 4)
    fail(pay_b, 1)
    assert a.sync_once()
    assert b.sync_once()
    assert a.sync_once()
    for store in (a, b):
        view = store.fleet_view("pay")
        assert view is not None
        assert (view.calls, view.failures, view.slow_calls) == (10, 3, 0)
        assert view.state == "none"  # nobody opened or closed anything yet
    assert a.replica_id != b.replica_id
    assert pay_a.state is State.CLOSED
    assert pay_b.state is State.CLOSED


def test_slow_calls_count_too(stores: Callable[..., RedisBreakerStore]) -> None:
    """Slow outcomes are summed like failures."""
    clock = FakeClock()
    a = stores()
    pay = breaker(clock, minimum_calls=100, slow_call_duration=1.0, slow_call_rate_threshold=0.9)
    a.share(pay)

    def slow() -> None:
        clock.advance(2)

    pay.call(slow)
    pay.call(slow)
    a.sync_once()
    view = a.fleet_view("pay")
    assert view is not None
    assert (view.calls, view.slow_calls) == (2, 2)


# -- open, close, probes ----------------------------------------------------------


def test_an_open_at_one_replica_opens_the_other_at_its_next_step(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """A local opening is published; the other replica adopts it with the time left."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(), breaker()
    seen: list[StateChanged] = []
    pay_b._core.add_observer(seen.append)
    a.share(pay_a)
    b.share(pay_b)
    b.sync_once()
    fail(pay_a, 4)
    assert pay_a.state is State.OPEN
    a.sync_once()  # publishes
    assert pay_b.state is State.CLOSED
    b.sync_once()  # adopts
    assert pay_b.state is State.OPEN
    with pytest.raises(CircuitOpenError) as info:
        pay_b.call(lambda: None)
    assert info.value.retry_after is not None
    assert 9.0 < info.value.retry_after <= 10.0
    assert [(e.new, e.reason) for e in seen] == [(State.OPEN, "opened by the fleet")]
    view = b.fleet_view("pay")
    assert view is not None
    assert view.state == "open"
    assert 9.0 < view.open_for <= 10.0


def test_fleet_counts_reaching_the_threshold_open_every_replica(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """No replica alone has enough calls to decide; the fleet's window has."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(minimum_calls=5), breaker(minimum_calls=5)
    a.share(pay_a)
    b.share(pay_b)
    for pay in (pay_a, pay_b):
        succeed(pay, 1)
        fail(pay, 2)
        assert pay.state is State.CLOSED  # 3 calls < minimum_calls
    a.sync_once()  # the fleet holds 3 calls
    assert pay_a.state is State.CLOSED
    b.sync_once()  # 6 calls, 4 failed: the verdict is B's
    assert pay_b.state is State.OPEN
    b.sync_once()  # publishes
    a.sync_once()
    assert pay_a.state is State.OPEN


def test_only_the_lease_holder_probes_and_its_success_closes_the_fleet(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """With both replicas half-open, one holds the probe lease; its close reaches the other."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(open_duration=SHORT), breaker(open_duration=SHORT)
    a.share(pay_a)
    b.share(pay_b)
    fail(pay_a, 4)
    a.sync_once()
    b.sync_once()
    assert pay_b.state is State.OPEN
    time.sleep(SHORT + 0.02)  # the fleet's open period ends (Redis's clock is real)
    assert pay_a.state is State.HALF_OPEN
    assert pay_b.state is State.HALF_OPEN
    # Their gates are closed: calls wait for the lease (and show there is traffic).
    assert rejected(pay_a)
    assert rejected(pay_b)
    a.sync_once()  # A asks first and gets it
    b.sync_once()
    view_a, view_b = a.fleet_view("pay"), b.fleet_view("pay")
    assert view_a is not None
    assert view_b is not None
    assert view_a.holding
    assert not view_b.holding
    assert view_b.probe_holder == a.replica_id
    assert rejected(pay_b)  # B sends no probe
    pay_a.call(lambda: None)  # A's probe succeeds: A closes
    assert pay_a.state is State.CLOSED
    a.sync_once()  # publishes the close, releases the lease
    b.sync_once()
    assert pay_b.state is State.CLOSED
    view_b = b.fleet_view("pay")
    assert view_b is not None
    assert view_b.state == "closed"
    assert view_b.probe_holder is None


def test_a_failed_probe_reopens_the_whole_fleet(stores: Callable[..., RedisBreakerStore]) -> None:
    """The holder's failed probe is published and the half-open replica opens again."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(open_duration=SHORT), breaker(open_duration=SHORT)
    a.share(pay_a)
    b.share(pay_b)
    fail(pay_a, 4)
    a.sync_once()
    b.sync_once()
    time.sleep(SHORT + 0.02)
    assert rejected(pay_a)
    assert rejected(pay_b)
    a.sync_once()
    b.sync_once()
    fail(pay_a, 1)  # the probe
    assert pay_a.state is State.OPEN
    a.sync_once()
    b.sync_once()
    assert pay_b.state is State.OPEN
    view = b.fleet_view("pay")
    assert view is not None
    assert view.probe_holder is None  # a new open period: the lease is free again


def test_an_idle_lease_holder_lets_go(stores: Callable[..., RedisBreakerStore]) -> None:
    """A holder with no traffic for a lease's time releases it, so a replica with traffic can probe."""
    a, b = stores(probe_lease=SHORT), stores(probe_lease=SHORT)
    pay_a, pay_b = breaker(open_duration=SHORT), breaker(open_duration=SHORT)
    a.share(pay_a)
    b.share(pay_b)
    fail(pay_a, 4)
    a.sync_once()
    b.sync_once()
    time.sleep(SHORT + 0.02)
    assert rejected(pay_a)
    a.sync_once()  # A has traffic: A holds
    assert rejected(pay_b)
    b.sync_once()  # B waits
    assert rejected(pay_b)
    time.sleep(SHORT + 0.02)
    a.sync_once()  # no call at A for a lease's time: it lets go
    assert rejected(pay_b)
    b.sync_once()  # B has traffic: B holds
    view = b.fleet_view("pay")
    assert view is not None
    assert view.holding
    pay_b.call(lambda: None)
    assert pay_b.state is State.CLOSED


def test_a_holder_keeps_the_lease_between_sparse_calls(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """Calls rarer than sync steps: the holder keeps the lease until one comes, and probes.

    Letting go at every step without a call handed the lease around a fleet of
    quiet replicas with none of them ever probing (seen in the reference service).
    """
    a, b = stores(probe_lease=1.0), stores(probe_lease=1.0)
    pay_a, pay_b = breaker(open_duration=SHORT), breaker(open_duration=SHORT)
    a.share(pay_a)
    b.share(pay_b)
    fail(pay_a, 4)
    a.sync_once()
    b.sync_once()
    time.sleep(SHORT + 0.02)
    assert rejected(pay_a)
    a.sync_once()  # A had a call: A holds
    for _ in range(3):  # steps with no call anywhere
        a.sync_once()
        b.sync_once()
    pay_a.call(lambda: None)  # the next call at A is the probe
    assert pay_a.state is State.CLOSED


def test_a_replica_joining_while_the_fleet_probes_waits_half_open(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """A closed replica that finds an open period already over joins the probing, gate closed."""
    a = stores()
    pay_a = breaker(open_duration=0.05)
    a.share(pay_a)
    fail(pay_a, 4)
    a.sync_once()
    time.sleep(0.1)  # the fleet's open period ends
    b = stores()
    pay_b = breaker(open_duration=0.05)
    b.share(pay_b)
    b.sync_once()  # joins: open for a millisecond, then half-open
    time.sleep(0.01)
    assert pay_b.state is State.HALF_OPEN
    assert rejected(pay_b)


def test_a_lost_fleet_state_is_told_again(
    stores: Callable[..., RedisBreakerStore], admin: redis.Redis, ns: str
) -> None:
    """Redis lost the keys (a restart): an open replica publishes its open again."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(), breaker()
    a.share(pay_a)
    b.share(pay_b)
    fail(pay_a, 4)
    a.sync_once()
    admin.delete(*admin.keys(f"{ns}:*"))
    a.sync_once()  # finds no fleet state: publishes again next step
    a.sync_once()
    b.sync_once()
    assert pay_b.state is State.OPEN


def test_operator_actions_stay_local(stores: Callable[..., RedisBreakerStore]) -> None:
    """force_open / reset on one replica are not published."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(), breaker()
    a.share(pay_a)
    b.share(pay_b)
    pay_a.force_open()
    a.sync_once()
    b.sync_once()
    assert pay_b.state is State.CLOSED


def test_unshare_stops_sharing(stores: Callable[..., RedisBreakerStore]) -> None:
    """After the remover runs, the breaker is alone again."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(), breaker()
    a.share(pay_a)
    remove = b.share(pay_b)
    remove()
    remove()  # idempotent
    fail(pay_a, 4)
    a.sync_once()
    b.sync_once()
    assert pay_b.state is State.CLOSED
    assert b.fleet_view("pay") is None


def test_a_breaker_open_when_shared_is_published(stores: Callable[..., RedisBreakerStore]) -> None:
    """An already open circuit is news for the fleet."""
    a, b = stores(), stores()
    pay_a, pay_b = breaker(), breaker()
    fail(pay_a, 4)
    a.share(pay_a)
    b.share(pay_b)
    a.sync_once()
    b.sync_once()
    assert pay_b.state is State.OPEN


def test_the_background_thread_shares_an_open_within_the_sync_interval(
    stores: Callable[..., RedisBreakerStore],
) -> None:
    """Real threads, real time: B opens within one sync interval of A."""
    interval = 0.1
    a, b = stores(sync_interval=interval), stores(sync_interval=interval)
    pay_a, pay_b = breaker(), breaker()
    a.share(pay_a)
    b.share(pay_b)
    opened: list[float] = []
    pay_b._core.add_observer(
        lambda e: opened.append(time.monotonic()) if e.new is State.OPEN else None
    )
    with a, b:
        time.sleep(2 * interval)  # both have synced
        t0 = time.monotonic()
        fail(pay_a, 4)
        deadline = t0 + 2.0
        while not opened and time.monotonic() < deadline:
            time.sleep(0.005)
    assert opened, "B never opened"
    assert opened[0] - t0 <= interval + 0.1


# -- the store's own failures ---------------------------------------------------


def test_an_unreachable_redis_leaves_every_breaker_local(ns: str) -> None:
    """A dead address: the step fails fast, says so once, and probes go local."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    clock = FakeClock()
    store = RedisBreakerStore(
        f"redis://127.0.0.1:{free_port()}/0", namespace=ns, listeners=listeners
    )
    try:
        pay = breaker(clock)
        store.share(pay)
        fail(pay, 4)
        t0 = time.monotonic()
        assert not store.sync_once()
        assert time.monotonic() - t0 < 0.5
        assert not store.sync_once()  # skipped: the store's breaker is open
        assert not store.healthy
        metrics = store.metrics
        assert (metrics.failures, metrics.skipped, metrics.outages) == (1, 1, 1)
        assert metrics.last_error == "ConnectionError"
        assert metrics.unavailable_for is not None
        [event] = rec.of_type(StoreUnavailable)
        assert (event.name, event.store, event.error) == (ns, "breakers", "ConnectionError")
        clock.advance(10)
        pay.call(lambda: None)  # the gate is open: a local probe
        assert pay.state is State.CLOSED
    finally:
        store.stop()


def test_a_flushed_script_cache_is_reloaded(
    stores: Callable[..., RedisBreakerStore], admin: redis.Redis
) -> None:
    """NOSCRIPT (a restart, SCRIPT FLUSH): load the scripts and go on."""
    a = stores()
    a.share(breaker())
    RedisRetryBudget(a, "pay")
    assert a.sync_once()
    admin.script_flush()
    assert a.sync_once()
    assert a.healthy
    assert a.metrics.failures == 0


def test_recovery_is_reported(
    redis_server: RedisServer, stores: Callable[..., RedisBreakerStore]
) -> None:
    """SIGSTOP: unavailable within one timeout; SIGCONT: recovered, sharing again."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    a = stores(listeners=listeners, sync_interval=0.05)
    a.share(breaker())
    assert a.sync_once()
    with redis_server.frozen_for_a_while():
        t0 = time.monotonic()
        assert not a.sync_once()
        assert time.monotonic() - t0 < 0.3
    deadline = time.monotonic() + 5
    while not a.sync_once() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a.healthy
    assert [type(e) for e in rec.events] == [StoreUnavailable, StoreRecovered]
    recovered = rec.of_type(StoreRecovered)[0]
    assert recovered.down_for > 0


# -- configuration --------------------------------------------------------------


def test_bad_options_fail_at_construction(redis_server: RedisServer) -> None:
    """Every bad option is named."""
    with pytest.raises(ConfigError) as info:
        RedisBreakerStore(redis_server.url, sync_interval=0, timeout=-1, namespace="")
    message = str(info.value)
    assert "sync_interval" in message
    assert "timeout" in message
    assert "namespace" in message
    with pytest.raises(ConfigError, match="fleet_window"):
        RedisBreakerStore(redis_server.url, fleet_window=CountWindow(10))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ttl"):
        RedisStaleStore(redis_server.url, ttl=0)


def test_one_name_is_shared_once(stores: Callable[..., RedisBreakerStore]) -> None:
    """Two breakers (or budgets) of one name in one store would mix their counts."""
    a = stores()
    a.share(breaker())
    with pytest.raises(ConfigError, match="already shared"):
        a.share(breaker())
    with pytest.raises(ConfigError, match="CircuitBreaker"):
        a.share(object())  # type: ignore[arg-type]
    RedisRetryBudget(a, "pay")
    with pytest.raises(ConfigError, match="already"):
        RedisRetryBudget(a, "pay")
    with pytest.raises(ConfigError, match="ratio"):
        RedisRetryBudget(a, "other", ratio=2)


# -- the fleet retry budget ----------------------------------------------------


def test_two_replicas_share_one_budget(stores: Callable[..., RedisBreakerStore]) -> None:
    """Tokens deposited at A are withdrawn at B; the fleet never exceeds its budget."""
    a, b = stores(), stores()
    budget_a = RedisRetryBudget(a, "pay", ratio=0.5, min_per_second=0.0, capacity=2)
    budget_b = RedisRetryBudget(b, "pay", ratio=0.5, min_per_second=0.0, capacity=2)
    assert isinstance(budget_a, Budget)
    a.sync_once()
    b.sync_once()
    assert (budget_a.pocket, budget_b.pocket) == (1, 1)
    assert budget_b.fleet_balance == 0.0
    assert budget_a.try_withdraw()
    assert not budget_a.try_withdraw()  # no I/O: the pocket is empty
    for _ in range(8):
        budget_a.deposit()  # 4 tokens, of which 2 fit
    a.sync_once()
    b.sync_once()
    withdrawn = 0
    for budget in (budget_b, budget_a, budget_b, budget_a):
        withdrawn += budget.try_withdraw()
    # B's first token and the 2 that fit: 3 more retries in the whole fleet.
    assert withdrawn == 3
    assert (budget_a.pocket, budget_b.pocket) == (0, 0)


def test_surplus_tokens_go_back_to_the_fleet(stores: Callable[..., RedisBreakerStore]) -> None:
    """A replica keeps what it asked for lately; the rest returns to the bucket."""
    a = stores()
    budget = RedisRetryBudget(a, "pay", ratio=0.0, min_per_second=0.0, capacity=10)
    for _ in range(6):
        budget.try_withdraw()  # demand: 6 in an interval
    a.sync_once()
    assert budget.pocket == 9  # asked 6: keeps 1.5x
    a.sync_once()  # nothing asked since: keeps one
    assert budget.pocket == 1
    assert budget.fleet_balance == 9.0


def test_the_budget_falls_back_to_local_tokens_without_redis(ns: str) -> None:
    """Unreachable: the local RetryBudget with the same settings answers."""
    store = RedisBreakerStore(
        f"redis://127.0.0.1:{free_port()}/0", namespace=ns, listeners=Listeners()
    )
    try:
        budget = RedisRetryBudget(store, "pay", ratio=0.5, min_per_second=0.0, capacity=2)
        assert not store.sync_once()
        assert budget.try_withdraw()
        assert budget.try_withdraw()
        assert not budget.try_withdraw()
        budget.deposit()
        budget.deposit()
        assert budget.try_withdraw()  # two deposits of half a token
        # The fleet will hear of exactly the two deposits, not of the local withdrawals.
        assert budget._deposits() == 2
    finally:
        store.stop()


# -- the stale cache ------------------------------------------------------------


def test_stale_store_round_trip_and_expiry(
    redis_server: RedisServer, ns: str, admin: redis.Redis
) -> None:
    """Values come back with their age; keys expire after ttl."""
    store = RedisStaleStore(redis_server.url, namespace=ns, ttl=0.3, listeners=Listeners())
    try:
        assert isinstance(store, StaleStore)
        assert store.get("missing") is None
        store.put("price:1", {"amount": 12.5, "currency": "EUR"})
        found = store.get("price:1")
        assert found is not None
        value, age = found
        assert value == {"amount": 12.5, "currency": "EUR"}
        assert 0.0 <= age < 0.2
        assert 0 < admin.pttl(f"{ns}:stale:price:1") <= 300
        store.put("bad", object())  # not JSON: dropped, not raised
        assert store.get("bad") is None
        time.sleep(0.35)
        assert store.get("price:1") is None
        assert store.healthy
    finally:
        store.close()


def test_stale_store_never_raises_when_redis_is_unreachable(ns: str) -> None:
    """A miss and a dropped write, one event, no exception."""
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    store = RedisStaleStore(f"redis://127.0.0.1:{free_port()}/0", namespace=ns, listeners=listeners)
    try:
        t0 = time.monotonic()
        store.put("k", 1)
        assert store.get("k") is None
        assert store.get("k") is None
        assert time.monotonic() - t0 < 0.5
        assert not store.healthy
        assert store.metrics.skipped == 2  # the store's breaker opened after one failure
        assert [e.store for e in rec.of_type(StoreUnavailable)] == ["stale"]
    finally:
        store.close()


def test_stale_store_skips_a_frozen_redis_after_one_timeout(
    redis_server: RedisServer, ns: str
) -> None:
    """SIGSTOP: the first get waits one timeout; the next ones miss at once."""
    store = RedisStaleStore(redis_server.url, namespace=ns, timeout=0.05, listeners=Listeners())
    try:
        store.put("k", "v")
        with redis_server.frozen_for_a_while():
            t0 = time.monotonic()
            assert store.get("k") is None
            first = time.monotonic() - t0
            t1 = time.monotonic()
            for _ in range(10):
                assert store.get("k") is None
            rest = time.monotonic() - t1
        assert first < 0.3
        assert rest < 0.05
    finally:
        store.close()


def test_async_stale_store(redis_server: RedisServer, ns: str) -> None:
    """The asyncio twin: same values, same ages, shared with the sync store."""

    async def main() -> None:
        store = AsyncRedisStaleStore(redis_server.url, namespace=ns, ttl=10, listeners=Listeners())
        sync = RedisStaleStore(redis_server.url, namespace=ns, listeners=Listeners())
        try:
            assert isinstance(store, AsyncStaleStore)
            assert await store.aget("k") is None
            await store.aput("k", [1, "two"])
            found = await store.aget("k")
            assert found is not None
            assert found[0] == [1, "two"]
            assert sync.get("k") == (found[0], pytest.approx(found[1], abs=0.1))
        finally:
            await store.aclose()
            sync.close()

    asyncio.run(main())


def test_async_stale_store_unreachable(ns: str) -> None:
    """The asyncio twin never raises either."""

    async def main() -> None:
        store = AsyncRedisStaleStore(
            f"redis://127.0.0.1:{free_port()}/0", namespace=ns, listeners=Listeners()
        )
        try:
            await store.aput("k", 1)
            assert await store.aget("k") is None
            assert not store.healthy
            assert store.metrics.failures == 1
        finally:
            await store.aclose()

    asyncio.run(main())


# -- the asyncio breaker store --------------------------------------------------


def test_async_store_shares_with_a_sync_one(redis_server: RedisServer, ns: str) -> None:
    """An asyncio replica and a threaded one share one breaker."""

    async def main() -> None:
        a = AsyncRedisBreakerStore(
            redis.asyncio.Redis.from_url(redis_server.url), namespace=ns, listeners=Listeners()
        )
        b = RedisBreakerStore(redis_server.url, namespace=ns, listeners=Listeners())
        try:
            pay_a, pay_b = breaker(), breaker()
            a.share(pay_a)
            b.share(pay_b)
            fail(pay_a, 4)
            assert await a.sync_once()
            b.sync_once()
            assert pay_b.state is State.OPEN
            assert a.healthy
        finally:
            await a.stop()
            b.stop()

    asyncio.run(main())


def test_async_store_task_adopts_an_open_within_the_interval(
    redis_server: RedisServer, ns: str
) -> None:
    """The sync task, in real time: a fleet open reaches the asyncio replica."""
    interval = 0.1

    async def main() -> float:
        a = AsyncRedisBreakerStore(
            redis_server.url, namespace=ns, sync_interval=interval, listeners=Listeners()
        )
        b = RedisBreakerStore(
            redis_server.url, namespace=ns, sync_interval=interval, listeners=Listeners()
        )
        pay_a, pay_b = breaker(), breaker()
        a.share(pay_a)
        b.share(pay_b)
        async with a:
            with b:
                await asyncio.sleep(2 * interval)
                t0 = time.monotonic()
                fail(pay_b, 4)
                while pay_a.state is not State.OPEN and time.monotonic() - t0 < 2:
                    await asyncio.sleep(0.005)
                return time.monotonic() - t0

    assert asyncio.run(main()) <= interval + 0.1


# -- keys -----------------------------------------------------------------------


def test_every_key_is_namespaced_and_expires(
    redis_server: RedisServer, stores: Callable[..., RedisBreakerStore], ns: str, admin: redis.Redis
) -> None:
    """After a run touching every kind of key: all under the namespace, none without a TTL."""
    a, b = stores(), stores()
    pay_a = breaker(window=TimeWindow(2, 4), open_duration=SHORT)
    pay_b = breaker(window=TimeWindow(2, 4), open_duration=SHORT)
    a.share(pay_a)
    b.share(pay_b)
    RedisRetryBudget(a, "pay").deposit()
    succeed(pay_a, 1)
    fail(pay_a, 3)
    assert pay_a.state is State.OPEN
    a.sync_once()
    b.sync_once()
    time.sleep(SHORT + 0.02)
    assert rejected(pay_a)
    a.sync_once()  # takes the probe lease
    stale = RedisStaleStore(redis_server.url, namespace=ns, listeners=Listeners())
    try:
        stale.put("x", 1)
    finally:
        stale.close()
    keys = sorted(admin.scan_iter(match=f"{ns}:*"))
    assert keys == sorted(
        [
            f"{ns}:breaker:{{pay}}:probe",
            f"{ns}:breaker:{{pay}}:state",
            f"{ns}:breaker:{{pay}}:window",
            f"{ns}:budget:{{pay}}",
            f"{ns}:stale:x",
        ]
    )
    for key in keys:
        assert admin.pttl(key) > 0, key
