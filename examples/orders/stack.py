"""Start the whole stack -- five simulators and the service -- as real processes.

``python -m examples.orders.stack`` starts everything on loopback ports, prints
how to poke at it, and stops everything on Ctrl-C. The scenario runner and the
tests use :class:`Stack` the same way.

Every process runs in its own process group and is stopped on exit, on Ctrl-C,
and on SIGTERM; nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .settings import DOWNSTREAMS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, popen: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            # It exited (a failed startup): no point waiting out the timeout.
            msg = f"{url}: the process exited with status {popen.returncode} before answering"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    msg = f"{url} did not answer within {timeout}s ({last!r})"
    raise TimeoutError(msg)


@dataclass
class Process:
    """A child process in its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout)


@dataclass
class Stack:
    """The simulators and the order service, started and stopped together.

    Args:
        mode: "seawall" or "naive" (see wiring.py).
        env: Extra environment for the service (DATABASE_URL, REDIS_URL ...).
        data_dir: Where the service keeps its SQLite file and outboxes
            (default: a fresh temporary directory).
    """

    mode: str = "seawall"
    env: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    #: How many service processes (replicas) to run, on one database.
    replicas: int = 1
    simulators: dict[str, Process] = field(default_factory=dict)
    services: list[Process] = field(default_factory=list)
    #: Where the children's stdout and stderr go (``None``: this terminal).
    log: IO[bytes] | None = None
    #: Per simulator, changes to its default capacity (simulators.SIZING), e.g.
    #: ``{"payment": {"workers": 4}}``; ``{"payment": {"workers": None}}`` for
    #: the unlimited model, where each request only sleeps.
    capacity: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def service(self) -> Process | None:
        """The first replica (the only one, by default)."""
        return self.services[0] if self.services else None

    def start(self) -> Stack:
        """Start every process and wait until each answers."""
        try:
            for name in DOWNSTREAMS:
                port = free_port()
                args = ["-m", "examples.orders.simulators", name, "--port", str(port)]
                if name in self.capacity:
                    args += ["--capacity", json.dumps(dict(self.capacity[name]))]
                popen = self._spawn(args, {})
                self.simulators[name] = Process(name, popen, f"http://127.0.0.1:{port}")
            for sim in self.simulators.values():
                _wait_http(sim.url + "/_control", 30)
            for replica in range(self.replicas):
                self.start_service(replica)
        except BaseException:
            self.stop()
            raise
        return self

    def start_service(self, replica: int = 0) -> Process:
        """(Re)start one replica of the service on a new port, with the same data directory."""
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="orders-")
            self.data_dir = Path(self._tmp.name)
        port = free_port()
        # Each replica owns its outboxes (one owner per file); they share the database.
        outboxes = self.data_dir if replica == 0 else self.data_dir / f"replica-{replica}"
        env = {
            "ORDERS_MODE": self.mode,
            "ORDERS_ADMIN": "1",
            "ORDERS_DATA_DIR": str(outboxes),
            "ORDERS_DRAIN_SECONDS": "0.5",
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.data_dir}/orders.db",
            **{f"ORDERS_{n.upper()}_URL": p.url for n, p in self.simulators.items()},
            **self.env,
        }
        popen = self._spawn(["-m", "examples.orders.serve", "--port", str(port)], env)
        process = Process(f"orders-{replica}", popen, f"http://127.0.0.1:{port}")
        if replica < len(self.services):
            self.services[replica] = process
        else:
            self.services.append(process)
        _wait_http(process.url + "/healthz", 60, popen)
        return process

    def _spawn(self, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log is not None else None,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove the temporary data.

        The services go first, while their downstreams still answer their last
        deliveries; then the simulators, all at once (a simulator with a long
        queue takes its own graceful-shutdown time to go).

        Args:
            timeout: How long each group may take to exit after SIGTERM.
        """
        _stop_all(self.services, timeout)
        _stop_all(list(self.simulators.values()), timeout)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- poking at it ----------------------------------------------------------

    def fault(self, downstream: str, **fault: Any) -> None:
        """Set a simulator's fault (see simulators.py); no arguments clears it."""
        url = self.simulators[downstream].url + "/_control/fault"
        method = "PUT" if fault else "DELETE"
        _request(method, url, fault or None)

    def simulator_state(self, downstream: str) -> dict[str, Any]:
        """A simulator's counters and records."""
        return _request("GET", self.simulators[downstream].url + "/_control", None)

    def service_state(self) -> dict[str, Any]:
        """The service's breakers, bulkheads, outboxes and order count."""
        assert self.service is not None
        return _request("GET", self.service.url + "/_admin/state", None)


def _stop_all(processes: list[Process], timeout: float) -> None:
    """SIGTERM every process at once, then wait; SIGKILL what is left at ``timeout``."""
    running = [p for p in processes if p.popen.poll() is None]
    for process in running:
        process.signal(signal.SIGCONT)
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.signal(signal.SIGKILL)
            process.popen.wait(timeout)


def _request(method: str, url: str, body: object) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return dict(json.loads(r.read() or b"{}"))


@contextlib.contextmanager
def running(mode: str = "seawall", **kw: Any) -> Iterator[Stack]:
    """``with running() as stack:`` -- the whole stack for the block."""
    stack = Stack(mode=mode, **kw)
    with stack:
        yield stack


def main(argv: list[str] | None = None) -> None:
    """Start the stack and wait for Ctrl-C."""
    parser = argparse.ArgumentParser(description="start the orders stack on loopback")
    parser.add_argument("--mode", choices=["seawall", "naive"], default="seawall")
    args = parser.parse_args(argv)
    stack = Stack(mode=args.mode)
    # SIGTERM behaves like Ctrl-C: the finally below stops every child.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.start()
        assert stack.service is not None
        url = stack.service.url
        print(f"orders service ({args.mode}): {url}")
        for name, sim in stack.simulators.items():
            print(f"  {name:16s} {sim.url}")
        print(f"""
Try:
  curl -s -X POST {url}/orders -H 'content-type: application/json' \\
       -d '{{"user_id": "u-1", "items": [{{"sku": "sku-001", "qty": 2}}]}}'
  curl -s {url}/products/sku-001
  curl -s '{url}/recommendations?user_id=u-1'
  curl -s {url}/readyz ; curl -s {url}/metrics | head
Break payment (slow, not down), then heal it:
  curl -s -X PUT {stack.simulators["payment"].url}/_control/fault -d '{{"latency": 3}}'
  curl -s -X DELETE {stack.simulators["payment"].url}/_control/fault
Ctrl-C stops everything.""")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
