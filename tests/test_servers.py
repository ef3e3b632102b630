"""The test servers are real, and freezing one really hangs its clients."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import redis

from tests.servers import PostgresServer, RedisServer


def test_redis_answers_then_hangs_when_frozen(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=0.2)
    assert client.ping()
    with redis_server.frozen_for_a_while():
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started >= 0.15  # it hung until our timeout
    assert client.ping()
    client.close()


def test_postgres_answers_then_hangs_when_frozen(postgres_server: PostgresServer) -> None:
    """An open connection's query hangs too (backends are frozen, not only the postmaster)."""
    with psycopg.connect(postgres_server.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        done = threading.Event()

        def query() -> None:
            conn.execute("SELECT 1")
            done.set()

        with postgres_server.frozen_for_a_while():
            worker = threading.Thread(target=query, daemon=True)
            worker.start()
            assert not done.wait(0.3)  # hangs while frozen
        assert done.wait(10)  # answers once thawed
        worker.join(10)
    with postgres_server.frozen_for_a_while(), pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_server.dsn, connect_timeout=1)
    with psycopg.connect(postgres_server.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
