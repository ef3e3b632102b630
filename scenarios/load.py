"""An open-loop load generator: requests leave on schedule, whatever is pending.

A closed-loop generator (N workers, each waiting for its answer before the next
request) sends *fewer* requests to a slow server, and so hides the slowness it
was meant to measure. Here every request is fired at its scheduled instant as
its own task, so the offered load is the same whatever the server does: the
arrival rate is fixed, only the answers change.

The same schedule drives several targets at once (the naive and the seawall
service): each arrival is fired at every target in the same instant, so the
two see identical load.

Each request is bounded by the client's total timeout (30 s, the top of the
timeout hierarchy). A cap on requests in flight is a safety bound only: an
arrival that would exceed it is not sent and is recorded as ``dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

#: The client's total budget per request: the top of the timeout hierarchy
#: (client 30 s > service 25 s > DB write 10 s > external 8 s > DB read 5 s).
CLIENT_TIMEOUT = 30.0
#: At most this many requests in flight per target (a safety bound, not a model).
MAX_IN_FLIGHT = 2000

#: The products the load reads: few enough that the warm-up puts each in the cache.
PRODUCTS = tuple(f"sku-{n:03d}" for n in range(1, 11))


@dataclass(frozen=True, slots=True)
class Route:
    """One kind of request in the load mix."""

    name: str
    method: str
    #: The path of the ``n``-th request of this route.
    path: Callable[[int], str]
    #: The JSON body of the ``n``-th request, if any.
    body: Callable[[int], dict[str, Any]] | None = None


def _order_body(n: int) -> dict[str, Any]:
    return {"user_id": f"user-{n % 500}", "items": [{"sku": PRODUCTS[n % 5], "qty": 1 + n % 3}]}


ROUTES: Mapping[str, Route] = {
    "POST /orders": Route("POST /orders", "POST", lambda _n: "/orders", _order_body),
    "GET /products": Route(
        "GET /products", "GET", lambda n: f"/products/{PRODUCTS[n % len(PRODUCTS)]}"
    ),
    "GET /recommendations": Route(
        "GET /recommendations", "GET", lambda n: f"/recommendations?user_id=user-{n % 500}"
    ),
}


@dataclass(frozen=True, slots=True)
class Arrival:
    """One scheduled request: ``at`` seconds after the start, the ``n``-th of ``route``."""

    at: float
    route: str
    n: int


def schedule(rates: Mapping[str, float], duration: float) -> list[Arrival]:
    """Constant-rate arrivals for each route over ``duration`` seconds, merged in time order.

    Route ``i`` of ``k`` is offset by ``i / (k * rate)`` so that routes interleave
    instead of all firing at the same instants.
    """
    arrivals = []
    for i, (route, rate) in enumerate(sorted(rates.items())):
        if rate <= 0:
            continue
        gap = 1.0 / rate
        offset = gap * i / max(len(rates), 1)
        n = 0
        while (at := offset + n * gap) < duration:
            arrivals.append(Arrival(at, route, n))
            n += 1
    arrivals.sort(key=lambda a: (a.at, a.route))
    return arrivals


@dataclass(slots=True)
class Result:
    """What happened to one request.

    Attributes:
        at: When it was sent, in seconds after the run's start.
        lag: How late it was sent against its schedule, in seconds.
        route: The route's name (``"POST /orders"`` ...).
        status: The HTTP status, or 0 when no response came.
        latency: Seconds from sending to the end of the response (or the failure).
        error: ``None`` for a 2xx; otherwise ``http_<status>``, ``timeout``,
            ``connect``, ``disconnect``, ``transport``, ``dropped`` (not sent:
            the in-flight cap) or ``unfinished`` (still running when the run
            stopped waiting).
        degraded: A 2xx marked degraded by the service (``Seawall-Degraded``).
    """

    at: float
    lag: float
    route: str
    status: int
    latency: float
    error: str | None
    degraded: bool = False

    @property
    def ok(self) -> bool:
        """Whether the request was answered with a 2xx."""
        return self.error is None

    def to_row(self) -> list[Any]:
        """A compact JSON row: ``[at, route, status, latency, error, degraded]``."""
        return [
            round(self.at, 4),
            self.route,
            self.status,
            round(self.latency, 4),
            self.error,
            self.degraded,
        ]


def error_kind(exc: BaseException) -> str:
    """Classify a failure without a response, the way a client would report it."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return "connect"
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return "timeout"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "disconnect"
    return "transport"


@dataclass
class Target:
    """One service under load: its client and what happened to its requests."""

    name: str
    base_url: str
    #: How long a user waits for an answer (the client's total timeout).
    timeout: float = CLIENT_TIMEOUT
    results: list[Result] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    #: The most requests in flight during each second of the run.
    peaks: dict[int, int] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> Target:
        # No pool limit of our own (the in-flight cap bounds it) and the total
        # timeout enforced around each request: httpx's timeouts are per operation.
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None
        await self._client.aclose()

    def fire(self, arrival: Arrival, at: float, lag: float) -> None:
        """Send one request as its own task (or record it dropped at the cap)."""
        if self.in_flight >= MAX_IN_FLIGHT:
            self.results.append(Result(at, lag, arrival.route, 0, 0.0, "dropped"))
            return
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        second = int(at)
        self.peaks[second] = max(self.peaks.get(second, 0), self.in_flight)
        task = asyncio.create_task(self._send(arrival, at, lag))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, arrival: Arrival, at: float, lag: float) -> None:
        assert self._client is not None
        route = ROUTES[arrival.route]
        body = route.body(arrival.n) if route.body else None
        started = time.perf_counter()
        status, degraded = 0, False
        error: str | None = "unfinished"
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.request(
                    route.method, route.path(arrival.n), json=body
                )
            status = response.status_code
            error = None if 200 <= status < 300 else f"http_{status}"
            degraded = error is None and "seawall-degraded" in response.headers
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = error_kind(exc)
        finally:
            self.in_flight -= 1
            latency = time.perf_counter() - started
            self.results.append(Result(at, lag, arrival.route, status, latency, error, degraded))

    async def drain(self, within: float) -> int:
        """Wait up to ``within`` seconds for requests in flight; cancel the rest.

        Returns:
            How many were cancelled (each recorded as ``unfinished``).
        """
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=within)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return len(pending)


async def run_open_loop(
    arrivals: Sequence[Arrival],
    targets: Sequence[Target],
    *,
    start: float,
    on_tick: Callable[[float], None] | None = None,
) -> float:
    """Fire every arrival at every target at ``start + arrival.at`` (``time.monotonic``).

    Returns:
        The largest lag behind schedule, in seconds (how late the generator
        itself ran: a large one means the machine, not the service, was the limit).
    """
    worst = 0.0
    for arrival in arrivals:
        delay = start + arrival.at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        lag = max(0.0, now - start - arrival.at)
        worst = max(worst, lag)
        for target in targets:
            target.fire(arrival, now - start, lag)
        if on_tick is not None:
            on_tick(now - start)
    return worst
