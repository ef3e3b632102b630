"""One replica of a fleet, for tests/integrations/test_redis_fleet.py: run as a script.

It calls a real HTTP downstream in a loop from a few threads, through a
circuit breaker shared with the other replicas through a RedisBreakerStore,
and prints one JSON line per event on stdout:

* ``{"event": "ready", "replica": ...}`` once the store runs;
* ``{"event": "state", "t": <time.time()>, "old": ..., "new": ..., "reason": ...}``
  for every transition of the breaker.

Each request carries ``X-Breaker-State``: the breaker's state when the call
started (``half_open`` or ``open`` marks a probe). It stops when its stdin
closes, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from seawall import CircuitBreaker, CircuitOpenError, CountWindow
from seawall.events import Listeners, StateChanged
from seawall.integrations.redis import RedisBreakerStore

_print_lock = threading.Lock()


def say(**fields: object) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--sync-interval", type=float, default=0.25)
    parser.add_argument("--open-duration", type=float, default=1.0)
    parser.add_argument("--half-open-calls", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.03)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args()

    listeners = Listeners()
    listeners.add(
        lambda e: say(
            event="state", t=time.time(), old=e.old.value, new=e.new.value, reason=e.reason
        ),
        StateChanged,
    )
    breaker = CircuitBreaker(
        "payment",
        window=CountWindow(10),
        minimum_calls=5,
        open_duration=args.open_duration,
        half_open_calls=args.half_open_calls,
        listeners=listeners,
    )
    store = RedisBreakerStore(
        args.redis,
        namespace=args.namespace,
        sync_interval=args.sync_interval,
        listeners=Listeners(),
    )
    store.share(breaker)
    store.start()
    stop = threading.Event()

    def request() -> None:
        state = breaker._core._state.value  # the state this call was admitted in
        req = urllib.request.Request(args.url, headers={"X-Breaker-State": state})  # noqa: S310 - http://127.0.0.1 from the test
        with urllib.request.urlopen(req, timeout=2) as response:  # noqa: S310
            response.read()

    def worker() -> None:
        while not stop.is_set():
            try:
                breaker.call(request)
            except CircuitOpenError:
                pass
            except (urllib.error.URLError, OSError):
                pass
            stop.wait(args.pause)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    say(event="ready", replica=store.replica_id)

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the test closes our stdin (or dies)
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait(args.max_seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    store.stop()


if __name__ == "__main__":
    main()
