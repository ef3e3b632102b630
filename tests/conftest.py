"""Shared fixtures: a fake clock, private listeners, and the sync/async driver switch."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from seawall.events import Listeners
from seawall.testing import FakeClock, RecordingListener

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def listeners() -> Listeners:
    return Listeners()


@pytest.fixture
def recorder(listeners: Listeners) -> RecordingListener:
    rec = RecordingListener()
    listeners.add(rec)
    return rec


def run(coro_fn: Callable[[], Any]) -> Any:
    """Run an async test body on a fresh event loop."""
    return asyncio.run(coro_fn())


@pytest.fixture(params=["with", "call", "decorator", "async with", "call_async", "async decorator"])
def drive(request: pytest.FixtureRequest, clock: FakeClock) -> Any:
    """A breaker driver for each entry point: sync and async run the same scenarios."""
    from tests.breaker_drivers import Driver

    driver = Driver(request.param, clock)
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def redis_server() -> Any:
    """A real redis-server for the session (see tests/servers.py)."""
    from tests.servers import start_redis

    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Any:
    """A real PostgreSQL cluster for the session (see tests/servers.py)."""
    from tests.servers import start_postgres

    server = start_postgres()
    yield server
    server.stop()
