"""Run the order service with uvicorn, and shut it down gracefully on SIGTERM.

On SIGTERM (what Kubernetes sends before killing a pod):

1. readiness turns 503 at once, so the load balancer stops sending requests;
2. after ``ORDERS_DRAIN_SECONDS`` (time for it to notice), the server stops
   accepting connections;
3. requests in flight finish, each within its own deadline (``request_deadline``
   of policies.toml, 25 s, at most: :func:`graceful_shutdown_timeout`);
4. the outboxes, all at once, deliver what they can in 2 s and stop within 2 s
   more; the rest stays on disk and is delivered by the next process
   (``wiring.CLOSE_SECONDS`` in all);
5. the process exits.

deploy/k8s/orders.yaml's grace period covers the sum of the three waits.

Two settings keep every request answered under load:

* Idle keep-alive connections stay open for :data:`KEEP_ALIVE` seconds
  (uvicorn's default is 5). A client told ``Retry-After: 5`` that waits and
  then reuses its connection sends at the very moment the server, idle for 5
  s, closes it: the request meets a reset, with no answer and no log line. The
  server must be the last to give up on an idle connection, after the client
  and the load balancer (60 s on many), never the first.
* The open-files limit is raised to its hard limit: each connection is a file,
  and at a soft limit of 1,024 a thousand clients would leave new
  connections waiting, unaccepted, in the listen queue.

``python -m examples.orders.serve --port 8000`` (settings from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import signal
from typing import Any

import uvicorn

from .app import create_app
from .policies import Policies
from .settings import Settings

KEEP_ALIVE = 75
"""Seconds an idle keep-alive connection is kept (nginx's default; above a 60 s balancer's)."""


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        with contextlib.suppress(ValueError, OSError):  # not ours to raise here: keep it
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def graceful_shutdown_timeout(request_deadline: float) -> int:
    """Seconds uvicorn waits for requests in flight at shutdown: a request deadline, and one.

    The second lets a request cut off at its deadline send its 504 and write
    what undoes it (``SeawallWiring.compensate``).
    """
    return math.ceil(request_deadline) + 1


class DrainingServer(uvicorn.Server):
    """A uvicorn server that turns readiness off before it stops accepting."""

    def __init__(self, config: uvicorn.Config, app: Any, drain_seconds: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_seconds = drain_seconds
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGTERM or self._draining:
            super().handle_exit(sig, frame)  # Ctrl-C, or a second SIGTERM: stop now
            return
        self._draining = True
        health = getattr(self._app.state, "health", None)
        if health is not None:
            health.mark_draining()
        loop = asyncio.get_event_loop()
        loop.call_later(self._drain_seconds, super().handle_exit, sig, frame)


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 (or --host) and --port."""
    parser = argparse.ArgumentParser(description="the orders reference service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    raise_open_files_limit()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
        # In-flight requests get their whole deadline to finish.
        timeout_graceful_shutdown=graceful_shutdown_timeout(
            Policies.load(settings.policies).service.request_deadline
        ),
    )
    DrainingServer(config, app, settings.drain_seconds).run()


if __name__ == "__main__":
    main()
