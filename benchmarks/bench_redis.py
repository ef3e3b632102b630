"""Breaker state shared through Redis: what it costs a call, and what it costs Redis.

A redis-server is started on a free loopback port for the run (tests/servers.py)
and stopped at the end.

Tables:

1. sync call overhead: a breaker with local state beside the same breaker
   shared through a running :class:`RedisBreakerStore` (its sync thread
   ticking), and Retry with a local RetryBudget beside one with the fleet's
   :class:`RedisRetryBudget`
2. the same for async decorators (the threaded store; the call path is the same)
3. Redis commands per 1,000 calls, at 1,000 calls/s and at full speed: client
   round trips (pipelines), Lua scripts run, and commands Redis executed
   (``INFO stats`` ``total_commands_processed``, which counts the commands
   inside scripts too)
4. call latency while Redis is frozen (SIGSTOP) under steady traffic: p50, p99
   and max before and during a one-second freeze
"""

from __future__ import annotations

import time
import uuid

import redis
from tests.servers import RedisServer, start_redis

from benchmarks._harness import QUICK, Case, Row, Table, compare
from seawall import CircuitBreaker
from seawall.core.budget import RetryBudget
from seawall.events import Listeners
from seawall.integrations.redis import RedisBreakerStore, RedisRetryBudget
from seawall.retry import Retry

NUMBER = 100_000 if not QUICK else 10_000
SECONDS = 3.0 if not QUICK else 1.0


def f() -> int:
    return 1


async def af() -> int:
    return 1


def _store(server: RedisServer, **kw) -> RedisBreakerStore:
    return RedisBreakerStore(
        server.url, namespace=f"bench{uuid.uuid4().hex[:6]}", listeners=Listeners(), **kw
    )


def _wait_healthy(store: RedisBreakerStore) -> None:
    """Wait for the first sync step (connected, scripts loaded)."""
    deadline = time.monotonic() + 5
    while not store.healthy:
        assert time.monotonic() < deadline, store.metrics
        time.sleep(0.01)


def overhead(server: RedisServer) -> list[Table]:
    store = _store(server)
    local = CircuitBreaker("local", listeners=Listeners())
    shared = CircuitBreaker("shared", listeners=Listeners())
    store.share(shared)
    retry_local = Retry(budget=RetryBudget(), listeners=Listeners())
    retry_fleet = Retry(budget=RedisRetryBudget(store, "bench"), listeners=Listeners())
    store.start()
    try:
        _wait_healthy(store)
        sync = compare(
            "sync call overhead: local state vs shared through Redis (store running)",
            [
                Case("bare", f),
                Case("seawall @breaker, local state", local(f)),
                Case("seawall @breaker, shared via RedisBreakerStore", shared(f)),
                Case("seawall @retry, local RetryBudget", retry_local(f)),
                Case("seawall @retry, RedisRetryBudget", retry_fleet(f)),
            ],
            seawall="seawall @breaker, local state",
            number=NUMBER,
            note="The store's sync thread runs every 0.5 s during the measurement.",
        )
        asyn = compare(
            "async call overhead: local state vs shared through Redis (store running)",
            [
                Case("bare", af, is_async=True),
                Case("seawall @breaker, local state", local(af), is_async=True),
                Case("seawall @breaker, shared via RedisBreakerStore", shared(af), is_async=True),
                Case("seawall @retry, local RetryBudget", retry_local(af), is_async=True),
                Case("seawall @retry, RedisRetryBudget", retry_fleet(af), is_async=True),
            ],
            seawall="seawall @breaker, local state",
            number=NUMBER,
        )
        assert store.healthy, store.metrics
    finally:
        store.stop()
    return [sync, asyn]


def _server_commands(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_commands_processed"])


def commands(server: RedisServer) -> Table:
    rows: list[Row] = []
    admin = redis.Redis.from_url(server.url)
    try:
        for label, rate in (("1,000 calls/s", 1000.0), ("full speed", None)):
            store = _store(server)
            breaker = CircuitBreaker("pay", listeners=Listeners())
            store.share(breaker)
            call = Retry(budget=RedisRetryBudget(store, "pay"), listeners=Listeners())(breaker(f))
            store.start()
            try:
                _wait_healthy(store)
                before = store.metrics
                server_before = _server_commands(admin)
                calls = 0
                t0 = time.perf_counter()
                end = t0 + SECONDS
                while True:
                    now = time.perf_counter()
                    if now >= end:
                        break
                    if rate is not None:
                        due = t0 + calls / rate
                        if due > now:
                            time.sleep(due - now)
                    call()
                    calls += 1
                elapsed = time.perf_counter() - t0
                # Every step of the run has been sent; the next INFO is not counted.
                server_after = _server_commands(admin)
                after = store.metrics
            finally:
                store.stop()
            per = 1000 / calls
            trips = after.round_trips - before.round_trips
            scripts = after.scripts - before.scripts
            executed = server_after - server_before - 1  # minus the first INFO itself
            rows += [
                Row(f"{label}: round trips", trips * per, trips / elapsed),
                Row(f"{label}: scripts (EVALSHA)", scripts * per, scripts / elapsed),
                Row(f"{label}: commands Redis executed", executed * per, executed / elapsed),
            ]
            rows.append(Row(f"{label}: calls made (total, not per 1,000)", calls, calls / elapsed))
    finally:
        admin.close()
    table = Table(
        "Redis commands per 1,000 calls (one shared breaker and one fleet budget per replica)",
        rows,
        (
            "Columns: per 1,000 calls, per second. Sync steps are time-driven (every 0.5 s: "
            "one pipelined round trip, one script per shared breaker and per budget), so the "
            "cost per call falls as traffic grows; 'commands Redis executed' counts the "
            "commands inside the scripts. At full speed the caller's loop holds the GIL, "
            "so the sync thread runs a little less often than every 0.5 s."
        ),
    )
    print(f"\n## {table.title}\n{table.note}")
    print(f"{'case':52s} {'/1,000 calls':>14s} {'/second':>10s}")
    for r in rows:
        print(f"{r.name:52s} {r.ns:14.3f} {r.overhead_ns:10.1f}")
    return table


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def frozen(server: RedisServer) -> Table:
    timeout = 0.05
    store = _store(server, timeout=timeout)
    breaker = CircuitBreaker("pay", listeners=Listeners())
    store.share(breaker)
    call = breaker(f)

    def run(seconds: float) -> list[float]:
        latencies = []
        end = time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return latencies
            call()
            latencies.append(time.perf_counter() - t0)

    store.start()
    try:
        _wait_healthy(store)
        before = run(1.0)
        with server.frozen_for_a_while():
            during = run(1.0)
            assert not store.healthy
    finally:
        store.stop()
    rows = [
        Row(label, _percentile(s, 0.5) * 1e9, _percentile(s, 0.99) * 1e9, max(s) * 1e9)
        for label, s in (("before (Redis answering)", before), ("Redis SIGSTOPped", during))
    ]
    table = Table(
        "call latency while Redis is frozen (SIGSTOP), shared breaker, store timeout 50 ms",
        rows,
        "Columns: p50, p99, max, in ns per call; every call succeeded.",
    )
    print(f"\n## {table.title}\n{table.note}")
    print(f"{'case':44s} {'p50':>10s} {'p99':>10s} {'max':>12s}")
    for r in rows:
        print(f"{r.name:44s} {r.ns:10.0f} {r.overhead_ns:10.0f} {r.vs_seawall:12.0f}")
    return table


def main() -> list[Table]:
    server = start_redis()
    try:
        return [*overhead(server), commands(server), frozen(server)]
    finally:
        server.stop()


if __name__ == "__main__":
    main()
