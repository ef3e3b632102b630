"""``python -m scenarios.fleet``: payment down, three replicas, breaker state shared or not.

A fleet of replicas that each learn on their own that payment is down each
send their own half-open probes to it as it recovers. Sharing breaker state
through Redis (``ORDERS_SHARE_STATE=1``) makes the fleet probe as one. This
scenario runs two fleets of three replicas side by side -- one sharing, one
not -- keeps orders flowing to every replica while payment answers 503, and
counts the charge requests that reach payment each second.

It needs ``redis-server`` (the test command installs it); it starts its own
on a free loopback port and stops it, with everything else, on exit or Ctrl-C.
Writes ``fleet.html`` and ``fleet.json``; ``python -m scenarios --fleet``
(``scripts/demo --fleet``) runs it after the eight scenarios and adds it to
``report.html`` as its ninth section.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import plotly.graph_objects as go  # type: ignore[import-untyped]
from examples.orders.stack import Stack, free_port

REPLICAS = 3
ORDER = {"user_id": "fleet", "items": [{"sku": "sku-001", "qty": 1}]}
#: Seconds of the run (quick, full), and orders per second to each fleet.
DURATION = {True: 20.0, False: 40.0}
RATE = 6.0
#: Seconds for the breakers to open first: the probes are what follows.
WARMUP = 3


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server is not installed (scripts/ensure-servers installs it)"
        raise SystemExit(msg)
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="fleet-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                import socket  # noqa: PLC0415

                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            if time.monotonic() > deadline:
                msg = "redis-server did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def charges(stack: Stack) -> int:
    """Charge requests that have reached payment so far (refunds excluded)."""
    return int(stack.simulator_state("payment")["by_path"].get("/charges", 0))


def drive(stack: Stack, stop: threading.Event, rate: float) -> None:
    """Orders to every replica in turn at ``rate`` per second, until ``stop``."""
    clients = [httpx.Client(base_url=s.url, timeout=30) for s in stack.services]
    try:
        i = 0
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                clients[i % len(clients)].post("/orders", json=ORDER)
            i += 1
            stop.wait(1 / rate)
    finally:
        for c in clients:
            c.close()


def run(duration: float, rate: float) -> dict[str, Any]:
    """Run both fleets at once; return per-second charge arrivals and totals."""
    with redis_server() as url:
        fleets = {
            "shared": Stack(env={"REDIS_URL": url, "ORDERS_SHARE_STATE": "1"}, replicas=REPLICAS),
            "not shared": Stack(env={"REDIS_URL": url}, replicas=REPLICAS),
        }
        try:
            for fleet in fleets.values():
                fleet.start()
                fleet.fault("payment", error_rate=1, status=503)
            stop = threading.Event()
            threads = [
                threading.Thread(target=drive, args=(f, stop, rate), daemon=True)
                for f in fleets.values()
            ]
            for t in threads:
                t.start()
            # Sample each fleet's count once a second: arrivals per second.
            counts = {name: [0] for name in fleets}
            for _ in range(int(duration)):
                time.sleep(1.0)
                for name, fleet in fleets.items():
                    counts[name].append(charges(fleet))
            stop.set()
            for t in threads:
                t.join(timeout=60)
            result: dict[str, Any] = {"duration": duration, "rate": rate, "fleets": {}}
            for name in fleets:
                c = counts[name]
                series = [b - a for a, b in itertools.pairwise(c)]
                steady = series[WARMUP:]
                result["fleets"][name] = {
                    "per_second": series,
                    "after_warmup": round(sum(steady), 1),
                    "per_second_after_warmup": round(sum(steady) / max(len(steady), 1), 2),
                }
            return result
        finally:
            for fleet in fleets.values():
                fleet.stop()


def figure(result: dict[str, Any]) -> go.Figure:
    """Charge requests reaching payment per second, one bar series per fleet."""
    figure = go.Figure()
    for name, data in result["fleets"].items():
        figure.add_trace(go.Bar(name=name, y=data["per_second"]))
    figure.update_layout(
        title="Charge requests reaching payment per second (3 replicas, payment down)",
        xaxis_title="seconds",
        yaxis_title="requests/s",
        barmode="group",
        template="plotly_white",
    )
    return figure


def render(result: dict[str, Any]) -> str:
    """A one-plot HTML page."""
    return str(figure(result).to_html(include_plotlyjs="inline", full_html=True))


def section(result: dict[str, Any]) -> str:
    """The fleet scenario as a section of the main report (plotly.js loaded by the page)."""
    plot = figure(result).to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id="plot-fleet",
        config={"displaylogo": False, "responsive": True},
    )
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class=num>{data['after_warmup']:.0f}</td>"
        f"<td class=num>{data['per_second_after_warmup']:.2f}/s</td></tr>"
        for name, data in result["fleets"].items()
    )
    return (
        "<section id='fleet'><h2>8. A fleet of three replicas, payment down</h2>"
        "<p class=story>Two fleets of three replicas of the seawall service, side by side,"
        " each taking orders at every replica while payment answers 503. One shares its"
        " breaker state through Redis (one replica holds the probe lease in each probe"
        " period); the other does not, so each replica learns on its own and probes on its"
        " own. Count the charge requests that reach the recovering service.</p>"
        f"<p class=meta>{result['rate']:g} orders/s to each fleet for"
        f" {result['duration']:g} s; counted after the first {WARMUP} s, once the breakers"
        " have opened.</p>"
        "<table><tr><th>fleet</th><th>charge requests reaching payment</th>"
        f"<th>per second</th></tr>{rows}</table>{plot}</section>"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fleet scenario and write fleet.html and fleet.json."""
    parser = argparse.ArgumentParser(
        prog="python -m scenarios.fleet", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{DURATION[True]:g} s instead of {DURATION[False]:g} s",
    )
    parser.add_argument("--out", type=Path, default=Path("fleet.html"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        result = run(DURATION[args.quick], rate=RATE)
    except KeyboardInterrupt:
        print("interrupted: every process stopped", file=sys.stderr)
        return 130
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.write_text(render(result))
    for name, data in result["fleets"].items():
        print(
            f"{name:11s} charge requests reaching payment after the breakers opened: "
            f"{data['after_warmup']:.0f} ({data['per_second_after_warmup']:.2f}/s)"
        )
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
