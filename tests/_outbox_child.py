"""A child process for the outbox crash tests, and the HTTP deliver both sides use.

Run as ``python _outbox_child.py PATH URL COUNT MODE SYNCHRONOUS``: it opens the
outbox at PATH (with that ``synchronous`` setting), puts COUNT events, prints their ids as one JSON line once every ``put``
has returned (so all are committed), and then waits to be SIGKILLed.

MODE ``down``: the worker runs while the events are put (the receiver refuses
connections, so every attempt fails and is rescheduled). MODE ``up``: the worker
starts after the ids are printed, and delivers until the kill.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import TYPE_CHECKING

from seawall.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Callable

    from seawall.outbox import OutboxEntry

# No proxy: the receiver is on loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_deliver(url: str) -> Callable[[OutboxEntry], None]:
    """Return a deliver that POSTs an entry as JSON; a non-2xx status raises."""

    def deliver(entry: OutboxEntry) -> None:
        body = json.dumps({"id": entry.id, "topic": entry.topic, "payload": entry.payload})
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL from the test
            url,
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": entry.id},
        )
        with _OPENER.open(request, timeout=5) as response:
            response.read()

    return deliver


def main() -> None:
    path, url, count, mode, synchronous = sys.argv[1:6]
    outbox = Outbox(
        path,
        deliver=http_deliver(url),
        synchronous="full" if synchronous == "full" else "normal",
        backoff_initial=0.05,
        backoff_maximum=0.5,
        poll_interval=0.1,
        name="child",
    )
    if mode == "down":
        outbox.start()
    ids = [outbox.put("orders", {"n": n}) for n in range(int(count))]
    print(json.dumps(ids), flush=True)
    if mode == "up":
        outbox.start()
    time.sleep(120)  # the test kills us long before this


if __name__ == "__main__":
    main()
