"""A fleet on one Redis: three real processes share a breaker; Redis frozen under traffic."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pytest

from seawall import CircuitBreaker, CountWindow, State
from seawall.events import Listeners
from seawall.integrations.redis import (
    AsyncRedisBreakerStore,
    RedisBreakerStore,
    StoreRecovered,
    StoreUnavailable,
)
from seawall.testing import RecordingListener

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.servers import RedisServer

pytestmark = pytest.mark.slow

REPLICA = Path(__file__).with_name("_redis_replica.py")
SYNC_INTERVAL = 0.25
OPEN_DURATION = 1.0
HALF_OPEN_CALLS = 2
# Scheduling noise of three processes and a server on two cores.
SLACK = 0.2


class Downstream:
    """A real HTTP downstream on loopback that counts requests and fails as told."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str, str]] = []  # (time, path, X-Breaker-State)
        self.failing: set[str] = set()
        self.fail_all = False
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with downstream.lock:
                    downstream.seen.append(
                        (time.time(), self.path, self.headers.get("X-Breaker-State", ""))
                    )
                    fail = downstream.fail_all or self.path in downstream.failing
                body = b"no" if fail else b"ok"
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def requests_between(self, start: float, end: float) -> list[tuple[float, str, str]]:
        with self.lock:
            return [r for r in self.seen if start < r[0] < end]


class Replica:
    """A replica process and the JSON lines it prints."""

    def __init__(self, name: str, redis_url: str, namespace: str, url: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(REPLICA),
                "--redis",
                redis_url,
                "--namespace",
                namespace,
                "--url",
                url,
                "--sync-interval",
                str(SYNC_INTERVAL),
                "--open-duration",
                str(OPEN_DURATION),
                "--half-open-calls",
                str(HALF_OPEN_CALLS),
                "--max-seconds",
                "60",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def drain(self) -> None:
        while True:
            try:
                self.events.append(self.lines.get_nowait())
            except queue.Empty:
                return

    def wait_for(self, *, timeout: float, **match: Any) -> dict[str, Any]:
        """Return the first event (old or new) whose fields include ``match``."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            for event in self.events:
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            if time.monotonic() > deadline:
                msg = f"replica {self.name}: no event {match} in {timeout}s; saw {self.events}"
                raise AssertionError(msg)
            time.sleep(0.01)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextlib.contextmanager
def fleet(
    redis_server: RedisServer, down: Downstream, namespace: str
) -> Iterator[dict[str, Replica]]:
    replicas: dict[str, Replica] = {}
    try:
        for name in "abc":
            replicas[name] = Replica(name, redis_server.url, namespace, f"{down.url}/{name}")
        yield replicas
    finally:
        for replica in replicas.values():
            replica.stop()


def clusters(times: list[float], gap: float) -> list[list[float]]:
    """Group sorted times into runs separated by more than ``gap``."""
    groups: list[list[float]] = []
    for t in sorted(times):
        if groups and t - groups[-1][-1] <= gap:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def test_three_processes_share_one_breaker(redis_server: RedisServer) -> None:
    """Failures at A open A, B and C within a sync interval; the fleet probes half_open_calls at a time."""
    namespace = f"fleet{uuid.uuid4().hex[:8]}"
    with Downstream() as down, fleet(redis_server, down, namespace) as replicas:
        for replica in replicas.values():
            replica.wait_for(event="ready", timeout=20)
        time.sleep(0.5)  # steady traffic, all closed
        for replica in replicas.values():
            replica.drain()
            assert not [e for e in replica.events if e["event"] == "state"], replica.events

        # Only A's requests fail.
        with down.lock:
            down.failing.add("/a")
        a_open = replicas["a"].wait_for(event="state", new="open", timeout=5)
        assert a_open["reason"] == "failure rate"
        b_open = replicas["b"].wait_for(event="state", new="open", timeout=5)
        c_open = replicas["c"].wait_for(event="state", new="open", timeout=5)
        for other in (b_open, c_open):
            assert other["reason"] == "opened by the fleet"
            assert other["t"] - a_open["t"] <= SYNC_INTERVAL + SLACK

        # The downstream stays down for two probe periods, then recovers.
        all_open = max(e["t"] for e in (a_open, b_open, c_open))
        with down.lock:
            down.fail_all = True
        time.sleep(2 * OPEN_DURATION + 0.3)
        with down.lock:
            down.fail_all = False
            down.failing.clear()
        closes = [replicas[n].wait_for(event="state", new="closed", timeout=8) for n in "abc"]
        first_close = min(e["t"] for e in closes)
        for close in closes:
            assert close["t"] - first_close <= SYNC_INTERVAL + SLACK

        # Between the fleet opening and its first replica closing, only probes
        # reach the downstream: tagged half-open (or open, when a failed
        # probe reopened the circuit while another was in flight).
        during = down.requests_between(all_open + 0.1, first_close)
        probes = [t for t, _, state in during if state in ("half_open", "open")]
        assert not [r for r in during if r[2] == "closed" and r[0] < first_close - 0.05], during
        periods = clusters(probes, gap=OPEN_DURATION / 2)
        assert len(periods) >= 2, during  # at least one failed period, then the good one
        assert all(len(p) <= HALF_OPEN_CALLS for p in periods), periods
        # And they came one probe period apart, not all at once.
        starts = [p[0] for p in periods]
        assert all(b - a >= OPEN_DURATION * 0.8 for a, b in itertools.pairwise(starts)), starts


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99)]


def timed_calls(pay: CircuitBreaker, seconds: float) -> tuple[list[float], int]:
    """Call through ``pay`` for ``seconds``; return per-call latencies and failures."""
    latencies: list[float] = []
    failures = 0
    work = list(range(20))
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 > end:
            return latencies, failures
        try:
            pay.call(sum, work)
        except Exception:
            failures += 1
        latencies.append(time.perf_counter() - t0)


def test_a_frozen_redis_costs_the_calls_nothing(redis_server: RedisServer) -> None:
    """SIGSTOP under steady traffic: no call fails, p99 within the store's timeout; SIGCONT: sharing resumes."""
    namespace = f"frozen{uuid.uuid4().hex[:8]}"
    timeout = 0.05
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec)
    a = RedisBreakerStore(
        redis_server.url,
        namespace=namespace,
        sync_interval=0.1,
        timeout=timeout,
        listeners=listeners,
    )
    b = RedisBreakerStore(
        redis_server.url,
        namespace=namespace,
        sync_interval=0.1,
        timeout=timeout,
        listeners=Listeners(),
    )
    pay_a = CircuitBreaker("pay", window=CountWindow(10), minimum_calls=4, listeners=Listeners())
    pay_b = CircuitBreaker("pay", window=CountWindow(10), minimum_calls=4, listeners=Listeners())
    a.share(pay_a)
    b.share(pay_b)
    try:
        with a:
            time.sleep(0.2)
            assert a.healthy
            before, failed_before = timed_calls(pay_a, 0.8)
            with redis_server.frozen_for_a_while():
                frozen, failed_frozen = timed_calls(pay_a, 1.0)
                assert not a.healthy
                assert [type(e) for e in rec.events] == [StoreUnavailable]
            assert failed_before == failed_frozen == 0
            assert p99(frozen) <= p99(before) + timeout + 0.005, (p99(before), p99(frozen))
            assert max(frozen) < 0.5  # no call stalled

            # After SIGCONT the store comes back by itself and shares again.
            deadline = time.monotonic() + 5
            while not a.healthy and time.monotonic() < deadline:
                time.sleep(0.01)
            assert a.healthy
            assert [type(e) for e in rec.events] == [StoreUnavailable, StoreRecovered]
            for _ in range(4):
                with contextlib.suppress(RuntimeError):
                    pay_b.call(_boom)
            assert b.sync_once()
            t0 = time.monotonic()
            while pay_a.state is not State.OPEN and time.monotonic() - t0 < 2:
                time.sleep(0.005)
            assert pay_a.state is State.OPEN
            assert time.monotonic() - t0 <= 0.1 + SLACK
    finally:
        b.stop()


def _boom() -> None:
    raise RuntimeError("down")


def test_a_frozen_redis_never_blocks_the_event_loop(redis_server: RedisServer) -> None:
    """The asyncio store: while Redis is frozen, the loop keeps serving calls."""
    namespace = f"afrozen{uuid.uuid4().hex[:8]}"

    async def call() -> int:
        return 1

    async def main() -> tuple[list[float], list[float], bool]:
        store = AsyncRedisBreakerStore(
            redis_server.url, namespace=namespace, sync_interval=0.05, listeners=Listeners()
        )
        pay = CircuitBreaker("pay", listeners=Listeners())
        store.share(pay)

        async def sample(seconds: float) -> list[float]:
            gaps = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                await pay.call_async(call)
                await asyncio.sleep(0)
                gaps.append(time.perf_counter() - t0)
            return gaps

        async with store:
            await asyncio.sleep(0.1)
            before = await sample(0.4)
            redis_server.freeze()
            try:
                frozen = await sample(0.6)
                healthy = store.healthy
            finally:
                redis_server.thaw()
        return before, frozen, healthy

    before, frozen, healthy = asyncio.run(main())
    assert not healthy
    assert p99(frozen) <= p99(before) + 0.05 + 0.005
