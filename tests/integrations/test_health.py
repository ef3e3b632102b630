"""Health routes against a real Redis and a real PostgreSQL, frozen with SIGSTOP while probed.

The servers are the session's (tests/servers.py): real processes on loopback.
A frozen server accepts TCP connections and never answers -- the "hung, not
down" failure. Readiness must say 503 within its check timeout (the clients'
own timeouts are left at their defaults: none), liveness must stay 200 and
fast, and readiness must come back within one cache TTL of the thaw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
import redis.asyncio
import uvicorn
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import QueuePool
from starlette.applications import Starlette

from seawall.health import Check, Health
from seawall.integrations.asgi import DeadlineMiddleware, health_routes
from seawall.integrations.checks import http_check, redis_check, sqlalchemy_check

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator

    from tests.integrations.downstream import Downstream
    from tests.servers import PostgresServer, RedisServer

CHECK_TIMEOUT = 0.3
TTL = 0.5
# What "fast" and "within the check timeout" allow for on a loaded 2-core machine.
# FAST is below CHECK_TIMEOUT: liveness never waits for a readiness check.
FAST = 0.2
WITHIN = 1.0

pytestmark = pytest.mark.slow


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def app_for(health: Health) -> Starlette:
    app = Starlette(routes=health_routes(health))
    app.add_middleware(DeadlineMiddleware)
    return app


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


@contextlib.asynccontextmanager
async def in_process(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def freeze_and_probe(
    http: httpx.AsyncClient, server: RedisServer | PostgresServer, check: str
) -> None:
    """The scenario: ready; frozen -> 503 in time, liveness fast; thawed -> 200 within a TTL."""
    assert (await http.get("/readyz")).status_code == 200
    with server.frozen_for_a_while():
        await asyncio.sleep(TTL)  # the cached "ok" expires
        probe = asyncio.create_task(timed(http.get("/readyz")))
        await asyncio.sleep(0.05)  # the readiness check is now hanging on the server
        live, live_elapsed = await timed(http.get("/healthz"))
        assert not probe.done()
        assert live.status_code == 200
        assert live_elapsed < FAST
        ready, elapsed = await probe
        assert ready.status_code == 503
        assert CHECK_TIMEOUT <= elapsed < WITHIN
        assert ready.json()["checks"][check]["status"] == "timeout"
        # While frozen, the answer stays 503 and stays quick (cached or not).
        again, elapsed = await timed(http.get("/readyz"))
        assert again.status_code == 503
        assert elapsed < WITHIN
    thawed = time.monotonic()
    while (await http.get("/readyz")).status_code != 200:
        assert time.monotonic() - thawed < TTL + CHECK_TIMEOUT, "not ready again within a TTL"
        await asyncio.sleep(0.02)


# -- in process ------------------------------------------------------------------------------


def test_ready_with_real_redis_and_postgres(
    redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    async def main() -> httpx.Response:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        engine = create_async_engine(postgres_server.url)
        health = Health(
            [Check("redis", redis_check(client)), Check("postgres", sqlalchemy_check(engine))]
        )
        try:
            async with in_process(app_for(health)) as http:
                return await http.get("/readyz")
        finally:
            await health.aclose()
            await client.aclose()
            await engine.dispose()

    response = run(main())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: c["status"] for name, c in body["checks"].items()} == {
        "redis": "ok",
        "postgres": "ok",
    }


def test_redis_frozen(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)  # no socket timeout at all
        health = Health([Check("redis", redis_check(client), timeout=CHECK_TIMEOUT)], cache_ttl=TTL)
        try:
            async with in_process(app_for(health)) as http:
                await freeze_and_probe(http, redis_server, "redis")
            # The cancelled PING's connection was dropped, not handed back half-read.
            assert await client.ping()
        finally:
            await health.aclose()
            await client.aclose()

    run(main())


def test_postgres_frozen(postgres_server: PostgresServer) -> None:
    async def main() -> None:
        engine = create_async_engine(
            postgres_server.url, connect_args={"connect_timeout": 5}, pool_timeout=5
        )
        health = Health(
            [Check("postgres", sqlalchemy_check(engine), timeout=CHECK_TIMEOUT)], cache_ttl=TTL
        )
        try:
            async with in_process(app_for(health)) as http:
                await freeze_and_probe(http, postgres_server, "postgres")
            await health.aclose()
            # The cancelled call's connection was given back (invalidated), not leaked.
            pool = engine.pool
            assert isinstance(pool, QueuePool)
            assert pool.checkedout() == 0
        finally:
            await health.aclose()
            await engine.dispose()

    run(main())


def test_a_degradable_dependency_down_keeps_the_instance_ready(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        health = Health(
            [Check("cache", redis_check(client), timeout=CHECK_TIMEOUT, required=False)],
            cache_ttl=0,
        )
        try:
            async with in_process(app_for(health)) as http:
                with redis_server.frozen_for_a_while():
                    response = await http.get("/readyz")
                assert response.status_code == 200
                assert response.json()["checks"]["cache"] == {
                    "status": "timeout",
                    "latency_ms": response.json()["checks"]["cache"]["latency_ms"],
                    "required": False,
                }
        finally:
            await health.aclose()
            await client.aclose()

    run(main())


def test_no_host_user_or_password_in_the_answer(postgres_server: PostgresServer) -> None:
    """A real connection failure: its text names the host, port and user; the answer does not."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens once closed
    url = f"postgresql+psycopg://admin:s3cr3t-pw@127.0.0.1:{closed_port}/orders"

    async def main(expose: bool) -> httpx.Response:
        engine = create_async_engine(url, connect_args={"connect_timeout": 2})
        health = Health([Check("db", sqlalchemy_check(engine), timeout=2)], expose_details=expose)
        try:
            async with in_process(app_for(health)) as http:
                return await http.get("/readyz")
        finally:
            await engine.dispose()

    hidden = run(main(expose=False))
    assert hidden.status_code == 503
    assert hidden.json()["checks"]["db"]["status"] == "failed"
    for secret in ("s3cr3t", "admin", "127.0.0.1", str(closed_port), "orders", "Error"):
        assert secret not in hidden.text
    shown = run(main(expose=True))
    assert str(closed_port) in shown.json()["checks"]["db"]["detail"]


def test_a_sync_engine_runs_one_thread_at_a_time(postgres_server: PostgresServer) -> None:
    engine = create_engine(postgres_server.url, connect_args={"connect_timeout": 5})
    check = sqlalchemy_check(engine)

    def check_threads() -> int:
        return sum(t.name.startswith("seawall-check-") for t in threading.enumerate())

    async def main() -> None:
        health = Health([Check("pg", check, timeout=CHECK_TIMEOUT)], cache_ttl=0)
        assert (await health.readiness()).ok
        with postgres_server.frozen_for_a_while():
            for _ in range(3):
                started = time.monotonic()
                report = await health.readiness()
                assert time.monotonic() - started < WITHIN
                assert report.checks[0].status == "timeout"
            assert check_threads() == 1  # the later probes queued behind the hung one
        deadline = time.monotonic() + 5
        while not (await health.readiness()).ok:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await health.aclose()

    try:
        run(main())
    finally:
        engine.dispose()


def test_check_helpers_refuse_what_they_cannot_check() -> None:
    sync_client = redis.Redis()
    try:
        with pytest.raises(TypeError, match=r"redis\.asyncio"):
            redis_check(sync_client)  # type: ignore[arg-type]
    finally:
        sync_client.close()
    with pytest.raises(TypeError, match="SQLAlchemy Engine"):
        sqlalchemy_check("postgresql://")  # type: ignore[arg-type]


def test_http_check_statuses() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(int(request.url.path.strip("/")))

    async def main() -> dict[int, bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            return {
                status: await http_check(f"http://svc/{status}", client)()
                for status in (200, 204, 302, 404, 500, 503)
            }

    assert run(main()) == {200: True, 204: True, 302: True, 404: False, 500: False, 503: False}


def test_http_check_ignores_proxy_environment_variables(
    downstream: Downstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a client of the caller's, the check goes straight to the URL, never via a proxy."""
    with socket.socket() as closed:  # bound, never listening: a proxy that refuses everything
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        assert run(http_check(f"{downstream.url}/ready")())
    [seen] = downstream.requests("/ready")
    assert seen.method == "GET"


# -- through a real uvicorn server ---------------------------------------------------------------


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a loopback port in a thread; stop it on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="on",
        loop="asyncio",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        give_up = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < give_up, "uvicorn did not start in time"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


def test_through_uvicorn(redis_server: RedisServer, postgres_server: PostgresServer) -> None:
    """The same scenario over real HTTP: the process and its event loop answer liveness."""
    # Clients are used only on the server's loop, and closed there on shutdown.
    client = redis.asyncio.Redis.from_url(redis_server.url)
    engine = create_async_engine(postgres_server.url, connect_args={"connect_timeout": 5})
    health = Health(
        [
            Check("redis", redis_check(client), timeout=CHECK_TIMEOUT),
            Check("postgres", sqlalchemy_check(engine), timeout=CHECK_TIMEOUT),
        ],
        cache_ttl=TTL,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        health.mark_draining()
        await health.aclose()
        await client.aclose()
        await engine.dispose()

    app = Starlette(routes=health_routes(health), lifespan=lifespan)
    app.add_middleware(DeadlineMiddleware)

    async def main(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await freeze_and_probe(http, redis_server, "redis")
            body = (await http.get("/readyz")).json()
            assert body["checks"]["postgres"]["status"] == "ok"
            # http_check through the real server, with and without a client of our own.
            assert await http_check(f"{url}/healthz", http)()
            assert await http_check(f"{url}/healthz")()
            assert not await http_check(f"{url}/nowhere")()

    with serving(app) as url:
        run(main(url))
    assert health.draining


def test_probe_storm_over_real_http_hits_redis_once(redis_server: RedisServer) -> None:
    """50 concurrent /readyz over real HTTP while a check runs: one PING reaches Redis."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    calls = 0
    ping = redis_check(client)

    async def counted() -> bool:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # long enough for the storm to arrive while it runs
        return await ping()

    health = Health([Check("redis", counted)], cache_ttl=5)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await health.aclose()
        await client.aclose()

    app = Starlette(routes=health_routes(health), lifespan=lifespan)

    async def main(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=url, timeout=5, limits=limits) as http:
            return await asyncio.gather(*(http.get("/readyz") for _ in range(50)))

    with serving(app) as url:
        responses = run(main(url))
    assert {r.status_code for r in responses} == {200}
    assert calls == 1
    assert len({json.dumps(r.json()) for r in responses}) == 1
