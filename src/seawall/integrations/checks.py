"""Readiness check functions for common dependencies: SQL databases, Redis, HTTP services.

Each helper returns an async callable for :class:`seawall.health.Check`::

    Health([
        Check("postgres", sqlalchemy_check(engine), timeout=0.5),
        Check("redis", redis_check(redis_client), timeout=0.3),
        Check("payments", http_check("http://payments/healthz", client), required=False),
    ])

Each imports its library only when called, so importing this module needs
none of them.

The :class:`~seawall.health.Health` timeout is what bounds a check: it cancels
the call, and reports ``"timeout"`` without waiting for the cancellation to
finish. The clients' own timeouts still matter, for what runs outside a check:
give engines a ``connect_timeout`` and a ``pool_timeout``, and Redis clients a
``socket_timeout``, so that a hung server never holds a connection forever.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
    import redis.asyncio
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["http_check", "redis_check", "sqlalchemy_check"]

CheckFn = Callable[[], Awaitable[bool]]


def sqlalchemy_check(engine: AsyncEngine | Engine, *, query: str = "SELECT 1") -> CheckFn:
    """Return a check that runs ``query`` on a connection from ``engine``'s pool.

    An :class:`~sqlalchemy.ext.asyncio.AsyncEngine` is used directly; if the
    call is cancelled (its timeout passed), SQLAlchemy invalidates the
    connection rather than return a connection in an unknown state to the pool.
    A sync :class:`~sqlalchemy.engine.Engine` runs in a thread of the check's
    own: a thread cannot be interrupted, so while a call hangs the next one
    waits for it rather than start a second thread (give the engine a
    ``connect_timeout`` and a ``statement_timeout`` so the thread ends).

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy engine.
    """
    from sqlalchemy import text  # noqa: PLC0415 - imported only by those who use it
    from sqlalchemy.engine import Engine  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: PLC0415

    statement = text(query)
    if isinstance(engine, AsyncEngine):
        async_engine = engine

        async def check() -> bool:
            async with async_engine.connect() as connection:
                await connection.execute(statement)
            return True

        return check
    given: object = engine
    if not isinstance(given, Engine):
        msg = f"engine must be a SQLAlchemy Engine or AsyncEngine, got {given!r}"
        raise TypeError(msg)
    sync_engine = given

    def select() -> bool:
        with sync_engine.connect() as connection:
            connection.execute(statement)
        return True

    return _in_own_thread(select, f"seawall-check-{sync_engine.url.drivername}")


def _in_own_thread(fn: Callable[[], bool], name: str) -> CheckFn:
    """Run ``fn`` in one dedicated thread: calls queue behind a hung one, never pile up."""
    executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def check() -> bool:
        nonlocal executor
        if executor is None:
            executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        # Cancelling the wrapper takes a queued call out of the queue; a running
        # one finishes in its thread, and the next call waits behind it.
        return await asyncio.wrap_future(executor.submit(fn))

    return check


def redis_check(client: redis.asyncio.Redis) -> CheckFn:
    """Return a check that sends ``PING`` with a ``redis.asyncio`` client.

    Cancelling a redis-py command mid-flight disconnects its connection
    (redis-py closes it on any interruption) and returns it to the pool, so a
    check cancelled during a freeze leaves nothing half-read behind.

    Raises:
        TypeError: ``client`` is a sync ``redis.Redis`` (it would block the loop).
    """
    import redis  # noqa: PLC0415 - imported only by those who use it

    given: object = client
    if isinstance(given, redis.Redis):
        msg = "redis_check needs a redis.asyncio client; a sync client would block the event loop"
        raise TypeError(msg)

    async def check() -> bool:
        return bool(await client.ping())

    return check


def http_check(
    url: str,
    client: httpx.AsyncClient | None = None,
    *,
    ok: Callable[[int], bool] | None = None,
) -> CheckFn:
    """Return a check that GETs ``url``: ok for a 2xx or 3xx status (redirects not followed).

    Args:
        url: What to GET.
        client: The ``httpx.AsyncClient`` to use (and its pool); by default a
            short-lived client per call, closed after it (also when cancelled),
            built with ``trust_env=False``: proxy variables (``HTTP_PROXY``,
            ``ALL_PROXY`` ...) and ``.netrc`` are ignored, so the check asks
            ``url`` itself, never a proxy that may be up when the service is
            down (or down when it is up). Pass a client for a proxy or
            credentials.
        ok: Decides from the status code instead of the 2xx/3xx rule.
    """
    import httpx  # noqa: PLC0415 - imported only by those who use it

    accept = ok or _success_or_redirect

    async def check() -> bool:
        if client is not None:
            response = await client.get(url)
        else:
            # A readiness check reports on the service, not on the way there.
            async with httpx.AsyncClient(trust_env=False) as own:
                response = await own.get(url)
        return accept(response.status_code)

    return check


def _success_or_redirect(status: int) -> bool:
    return 200 <= status < 400  # noqa: PLR2004 - the 2xx and 3xx classes
