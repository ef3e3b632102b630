"""The outbox across a real SIGKILL: 1,000 events put by a child process, delivered after a restart.

The receiver is a real HTTP server on 127.0.0.1 (standard library) that records
every event id it is sent. The outbox promises at-least-once delivery with a
stable event id, delivering one entry at a time: after a crash, the set of
received ids must equal the set of ids put, and an id may arrive twice only if
it was in flight when the process died (at most one).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from seawall.outbox import Outbox
from tests._outbox_child import http_deliver

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("_outbox_child.py")
EVENTS = 1000


class Receiver(ThreadingHTTPServer):
    """Records the id of every event POSTed to it; refuses connections until ``up()``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        # Bound but not listening: connections are refused, as from a receiver
        # that is down, and the port is ours for when it comes up.
        self.server_bind()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/events"
        self.delay = 0.0
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        self.server_activate()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def received(self) -> list[str]:
        with self.lock:
            return list(self.ids)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed sender leaves a broken pipe behind: expected here, not a failure.
        pass

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(10)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.ids.append(body["id"])
        if self.server.delay:
            time.sleep(self.server.delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def run_child_until_killed(
    path: Path, url: str, mode: str, synchronous: str, kill_when: Any
) -> list[str]:
    """Start the child, read the ids it committed, SIGKILL it once ``kill_when()``; return the ids."""
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(path), url, str(EVENTS), mode, synchronous],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        stdout = child.stdout

        def read_lines() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        try:
            try:
                ids: list[str] = json.loads(lines.get(timeout=30))
            except queue.Empty:
                pytest.fail("the child did not report its committed ids within 30s")
            wait_for(kill_when, 30, "the moment to kill the child")
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
            reader.join(10)
    assert len(ids) == EVENTS
    assert len(set(ids)) == EVENTS
    assert None not in ids
    return ids


def restart_and_drain(path: Path, receiver: Receiver, ids: list[str]) -> Outbox:
    """Open the same file in this process with a worker running; wait until every id arrived."""
    outbox = Outbox(
        path,
        deliver=http_deliver(receiver.url),
        backoff_initial=0.05,
        backoff_maximum=0.2,
        # Not fsyncing each delete keeps the test fast on a slow disk; a lost
        # delete could only cause a redelivery, which the assertions would catch.
        synchronous="normal",
        name="restart",
    )
    try:
        assert outbox.depth > 0  # the killed child's entries are still there
        outbox.start()
        wait_for(lambda: set(receiver.received()) >= set(ids), 60, "every id to arrive")
        wait_for(lambda: outbox.depth == 0, 10, "the outbox to empty")
        assert outbox.stop(timeout=10)
    finally:
        outbox.close()
    return outbox


def test_1000_events_survive_sigkill_while_receiver_is_down(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Events put while the receiver refuses survive a SIGKILL and arrive exactly once after."""
    path = tmp_path / "outbox.db"
    # The child's worker runs against the refusing port while it puts; kill it
    # as soon as all 1,000 are committed (with the default, fsyncing, setting).
    ids = run_child_until_killed(path, receiver.url, "down", "full", kill_when=lambda: True)
    assert receiver.received() == []

    receiver.up()
    outbox = restart_and_drain(path, receiver, ids)

    received = receiver.received()
    assert set(received) == set(ids)
    # Nothing was in flight at the kill (every attempt was refused): no duplicate.
    assert len(received) == EVENTS
    assert outbox.delivered == EVENTS


def test_1000_events_survive_sigkill_during_delivery(tmp_path: Path, receiver: Receiver) -> None:
    """A SIGKILL mid-delivery loses nothing and duplicates at most the one entry in flight."""
    path = tmp_path / "outbox.db"
    receiver.delay = 0.002  # slow enough to kill the child part-way through
    receiver.up()
    ids = run_child_until_killed(
        path, receiver.url, "up", "normal", kill_when=lambda: len(receiver.received()) >= 150
    )
    at_kill = len(receiver.received())
    assert at_kill < EVENTS  # the kill really was mid-delivery

    receiver.delay = 0.0
    restart_and_drain(path, receiver, ids)

    received = receiver.received()
    assert set(received) == set(ids)
    duplicates = {event_id: n for event_id, n in Counter(received).items() if n > 1}
    # The worker delivers one entry at a time: only the entry in flight at the
    # kill can arrive twice, and only once more.
    assert len(duplicates) <= 1
    assert all(n == 2 for n in duplicates.values())
    assert set(duplicates) <= set(received[:at_kill])
