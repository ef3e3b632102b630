"""Real PostgreSQL and Redis servers for tests, on free loopback ports.

Each server runs in its own session (process group), so a test can freeze the
whole of it with SIGSTOP -- the postmaster and every backend -- and thaw it with
SIGCONT: the "hung, not down" failure no mock reproduces. Servers are stopped
(and their data directories removed) when the fixture ends; a test that freezes
one always thaws it in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    msg = f"nothing listens on 127.0.0.1:{port} after {timeout}s"
    raise TimeoutError(msg)


def descendants(root: int) -> list[int]:
    """Return the pids of every descendant of ``root`` (from /proc; Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


@dataclass
class Server:
    """A server process in its own process group."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    frozen: bool = field(default=False)
    #: PostgreSQL's "fast" shutdown is SIGINT; SIGTERM would wait for clients.
    stop_signal: int = field(default=signal.SIGTERM)

    def freeze(self) -> None:
        """SIGSTOP every process of the server: it accepts nothing and answers nothing.

        The main process first (so it starts no new child), then every
        descendant: PostgreSQL backends call setsid(), so signalling the
        process group alone would leave open connections answering.
        """
        os.killpg(self.process.pid, signal.SIGSTOP)
        for pid in descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT every process of the server, children first."""
        for pid in descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.killpg(self.process.pid, signal.SIGCONT)
        self.frozen = False

    @contextlib.contextmanager
    def frozen_for_a_while(self) -> Iterator[None]:
        """Freeze inside the block; always thaw on the way out."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.frozen:
                self.thaw()
            os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RedisServer(Server):
    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class PostgresServer(Server):
    @property
    def url(self) -> str:
        """A SQLAlchemy URL for the psycopg (v3) driver."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def start_redis() -> RedisServer:
    """Start redis-server on a free port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server is not installed: run scripts/test (it installs it) or apt-get install redis-server"
        raise RuntimeError(msg)
    workdir = Path(tempfile.mkdtemp(prefix="seawall-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(port)
    return RedisServer("redis", port, process, workdir)


def _postgres_bin(tool: str) -> str:
    found = sorted(str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    if not found:
        msg = "PostgreSQL is not installed: run scripts/test (it installs it) or apt-get install postgresql"
        raise RuntimeError(msg)
    return found[-1]


def start_postgres() -> PostgresServer:
    """initdb a fresh cluster in a temp dir and start it on a free port (trust auth)."""
    workdir = Path(tempfile.mkdtemp(prefix="seawall-pg-"))
    data = workdir / "data"
    user: dict[str, object] = {}
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the postgres system user.
        pw = pwd.getpwnam("postgres")
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
        user = {"user": pw.pw_uid, "group": pw.pw_gid}
    subprocess.run(
        [_postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        **user,  # type: ignore[arg-type]
    )
    port = free_port()
    process = subprocess.Popen(
        [
            _postgres_bin("postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(workdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **user,  # type: ignore[arg-type]
    )
    wait_for_port(port, timeout=60)
    # Listening is not ready: it refuses logins while it starts up.
    ready = [_postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "1"]
    deadline = time.monotonic() + 60
    while subprocess.run(ready, capture_output=True, check=False, timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            msg = f"PostgreSQL on port {port} did not become ready"
            raise TimeoutError(msg)
        time.sleep(0.05)
    return PostgresServer("postgres", port, process, workdir, stop_signal=signal.SIGINT)


@contextlib.contextmanager
def serve_asgi(app: object, *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn (h11) on 127.0.0.1 in a thread; yield its base URL."""
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        http="h11",
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                msg = "uvicorn did not start"
                raise TimeoutError(msg)
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
