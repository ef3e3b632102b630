"""The reference service on PostgreSQL and Redis: real servers, frozen with SIGSTOP."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from examples.orders.stack import Stack

from tests.examples.conftest import eventually, order, reset
from tests.servers import PostgresServer, RedisServer


@pytest.fixture(scope="module")
def stack(postgres_server: PostgresServer, redis_server: RedisServer) -> Iterator[Stack]:
    env = {"DATABASE_URL": postgres_server.url, "REDIS_URL": redis_server.url}
    with Stack(env=env) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    reset(stack)
    assert stack.service is not None
    with httpx.Client(base_url=stack.service.url, timeout=30) as c:
        yield c


def test_happy_path_on_postgres_and_redis(stack: Stack, client: httpx.Client) -> None:
    r = order(client)
    assert r.status_code == 201, r.text
    assert client.get("/products/sku-003").json()["degraded"] is False
    ready = client.get("/readyz").json()
    assert set(ready["checks"]) == {"database", "cache"}
    assert ready["status"] == "ok"


def test_idempotency_keys_on_postgres_one_order_however_many_race(
    stack: Stack, client: httpx.Client
) -> None:
    """PostgreSQL's primary key decides a race for a new key: one order, the others wait or replay.

    Before the frozen-PostgreSQL tests on purpose: it leaves a pool of idle
    connections, and a read cancelled on one of them while the server is
    frozen took psycopg 10 s more to clean up (db._abandonable).
    """
    assert stack.service is not None
    body = {"user_id": "u-pg", "items": [{"sku": "sku-002", "qty": 1}]}
    before = stack.service_state()["orders"]
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=stack.service.url, timeout=30) as c:  # type: ignore[union-attr]
            answers.append(c.post("/orders", json=body, headers={"Idempotency-Key": "pg-race"}))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 6
    assert len({a.json()["order_id"] for a in answers if a.status_code == 201}) == 1
    assert all(a.status_code in (201, 409) for a in answers)
    replay = client.post("/orders", json=body, headers={"Idempotency-Key": "pg-race"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert stack.service_state()["orders"] == before + 1


def answers_within(client: httpx.Client, path: str, seconds: float) -> httpx.Response:
    started = time.monotonic()
    r = client.get(path)
    assert time.monotonic() - started < seconds, (path, time.monotonic() - started)
    return r


@contextlib.contextmanager
def liveness_watched(url: str) -> Iterator[None]:
    """Poll /healthz every 100 ms in a thread for the whole block: never a failure, never slow."""
    stop = threading.Event()
    bad: list[str] = []
    polls = 0

    def poll() -> None:
        nonlocal polls
        with httpx.Client(base_url=url, timeout=2.0) as c:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = c.get("/healthz").status_code
                except httpx.HTTPError as exc:
                    bad.append(repr(exc))
                else:
                    took = time.monotonic() - started
                    if status != 200 or took > 1.0:
                        bad.append(f"{status} in {took:.2f}s")
                polls += 1
                stop.wait(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        yield
    finally:
        watched = time.monotonic() - started
        stop.set()
        watcher.join(5)
    # A poll takes at most 1 s (a slower one is in bad) and then pauses 0.1 s, so a
    # block of T seconds was polled at least T / 1.1 - 1 times, however long it took:
    # the minimum follows the block, not a guess at how long the freeze lasts.
    assert polls >= max(1, int(watched / 1.1) - 1), (polls, watched)
    assert bad == []


def test_redis_frozen_service_answers_readiness_flips_and_back(
    stack: Stack, client: httpx.Client, redis_server: RedisServer
) -> None:
    client.get("/products/sku-006")  # cached
    assert stack.service is not None
    with liveness_watched(stack.service.url), redis_server.frozen_for_a_while():
        eventually(lambda: client.get("/readyz").status_code == 503, timeout=10)
        # Products still come from PostgreSQL; the cache write is bounded by its 1 s.
        assert answers_within(client, "/products/sku-006", 3.0).status_code == 200
        started = time.monotonic()
        assert order(client).status_code == 201
        assert time.monotonic() - started < 3.0
    eventually(lambda: client.get("/readyz").status_code == 200, timeout=10)


def test_postgres_frozen_service_answers_within_deadlines_and_recovers(
    stack: Stack, client: httpx.Client, postgres_server: PostgresServer
) -> None:
    fresh = client.get("/products/sku-007").json()
    assert stack.service is not None
    with liveness_watched(stack.service.url), postgres_server.frozen_for_a_while():
        eventually(lambda: client.get("/readyz").status_code == 503, timeout=10)
        stale = answers_within(client, "/products/sku-007", 12.0)  # 2 x 5 s reads, then the cache
        assert stale.status_code == 200
        assert stale.json()["degraded"] is True
        assert stale.json()["price_cents"] == fresh["price_cents"]
        started = time.monotonic()
        failed = order(client)
        assert failed.status_code in (503, 504)
        assert time.monotonic() - started < 26.0  # within the service's 25 s deadline
    eventually(lambda: client.get("/readyz").status_code == 200, timeout=15)
    eventually(lambda: order(client).status_code == 201, timeout=15, interval=0.5)
