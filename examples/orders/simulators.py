"""The reference service's downstreams: small real HTTP services with fault knobs.

Each simulator (payment, inventory, notification, recommendations, analytics)
is its own process on a loopback port, serving a few endpoints that do just
enough to be checked -- payment keeps its charges by idempotency key, so a
double charge is visible -- and a control API to break it at run time::

    PUT    /_control/fault   {"latency": 2.0}                  slow, not down
    PUT    /_control/fault   {"error_rate": 1, "status": 503, "retry_after": 5}
    PUT    /_control/fault   {"hang_rate": 1}                  accept, never answer
    PUT    /_control/fault   {"drop_rate": 1}                  close the connection
    PUT    /_control/fault   {"lose_response_rate": 1}         commit, then close
    DELETE /_control/fault                                     healthy again
    PUT    /_control/capacity {"workers": 4, "scale": 2.0}     fewer workers, slower work
    GET    /_control/capacity                                  the capacity in force
    GET    /_control                                           fault, counters, load per second
    POST   /_control/reset                                     forget records, empty the queue,
                                                               back to the start's capacity

The fault logic is :mod:`seawall.chaos`, the same that tests use in process.

Each simulator has a finite capacity (:mod:`examples.orders.capacity`): a few
workers and a FIFO queue, sized per service in :data:`SIZING` (see
docs/scenarios.md for why). A request queues for a worker and holds it for its
service time plus the fault's ``latency``; a caller that gives up does not
free the worker (the work is counted as wasted) unless ``notice_disconnect``
is set. Which requests take a worker:

* passed requests, lost responses (the work is done, then the line is cut), and
  failures with a 5xx status: the server tried and failed, after the work;
* not a 429 (a rate limiter answers at the door), a dropped connection (nothing
  is done) or a hang (a stuck host, holding the connection only).

Run one with ``python -m examples.orders.simulators payment --port 9101``
(``--capacity '{"workers": 2}'`` to change its sizing, ``--unlimited`` for the
old model, in which each request only sleeps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seawall.chaos import Action, Chaos, Decision, Fault
from seawall.errors import ConfigError
from seawall.integrations.httpx import DEADLINE_HEADER

from .capacity import (
    Capacity,
    Gone,
    Refused,
    Workers,
    read_body,
    replay,
    swallow,
    watch_disconnect,
)

SERVICES = ("payment", "inventory", "notification", "recommendations", "analytics")
CONTROL = "/_control"

#: Each simulator's capacity by default: at the scenarios' standard load (10
#: orders/s, each reaching payment, inventory, notification and analytics
#: once, and 5 recommendation pages/s) every service runs at 15-25 % of what
#: its workers can do, and at 50-60 % under the retry storm's 30 orders/s: a
#: service provisioned with headroom for a surge, not for retries on top of
#: one. Payment is the slowest (a card network behind it): 12 workers of
#: 0.15-0.25 s, 60 charges/s. docs/scenarios.md says what each fault makes of it.
SIZING: dict[str, Capacity] = {
    "payment": Capacity(workers=12, service_time=0.15, jitter=0.1),
    "inventory": Capacity(workers=4, service_time=0.05, jitter=0.05),
    "notification": Capacity(workers=2, service_time=0.03, jitter=0.02),
    "analytics": Capacity(workers=2, service_time=0.03, jitter=0.02),
    "recommendations": Capacity(workers=4, service_time=0.1, jitter=0.1),
}

# Generic popular items; recommendations personalise a rotation of the catalogue.
CATALOGUE = [f"sku-{n:03d}" for n in range(1, 41)]


class Records:
    """What a simulator received and did, for tests and the scenario runner."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0  # requests that reached the service (faulted or not)
        self.by_second: Counter[int] = Counter()  # arrivals per wall-clock second
        self.by_path: Counter[str] = Counter()  # arrivals per path
        # The latest arrival times per path (monotonic seconds: only the gaps
        # mean anything), so a test can see how long a retry waited.
        self.arrivals: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=50))
        # The deadline header of the latest requests per path, as sent (None:
        # absent), so a test can see the caller's budget travel downstream.
        self.deadlines: defaultdict[str, deque[str | None]] = defaultdict(lambda: deque(maxlen=50))
        self.charges: dict[str, dict[str, Any]] = {}  # idempotency key (or charge id) -> charge
        self.charges_per_order: Counter[str] = Counter()
        self.events: list[str] = []  # notification / analytics event ids, in arrival order
        self.reservations = 0
        self.refunds: list[str] = []  # order ids refunded (a compensation), repeats included
        self.releases: list[str] = []  # order ids whose reservation was released

    def arrived(self, path: str, deadline: str | None = None) -> None:
        with self.lock:
            self.received += 1
            self.by_second[int(time.time())] += 1
            self.by_path[path] += 1
            self.arrivals[path].append(time.monotonic())
            self.deadlines[path].append(deadline)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            unique = len(set(self.events))
            return {
                "received": self.received,
                "by_second": sorted(self.by_second.items()),
                "by_path": dict(self.by_path),
                "arrivals": {path: list(times) for path, times in self.arrivals.items()},
                "deadlines": {path: list(sent) for path, sent in self.deadlines.items()},
                "charges": len(self.charges),
                "orders_charged_twice": sorted(
                    o for o, n in self.charges_per_order.items() if n > 1
                ),
                "reservations": self.reservations,
                "charged_orders": sorted(self.charges_per_order),
                "refunded_orders": sorted(set(self.refunds)),
                "released_orders": sorted(set(self.releases)),
                "events": len(self.events),
                "unique_events": unique,
                "duplicate_events": len(self.events) - unique,
            }


def create_app(
    service: str, *, chaos: Chaos | None = None, capacity: Capacity | None = None
) -> Any:
    """Build the ASGI app of one simulator (faults applied to every non-control path).

    Args:
        service: Which simulator (one of :data:`SERVICES`).
        chaos: Its fault knob (default: none).
        capacity: Its workers and service times (default: :data:`SIZING`).
    """
    if service not in SERVICES:
        msg = f"unknown service {service!r}; one of {SERVICES}"
        raise ValueError(msg)
    chaos = chaos or Chaos()
    records = Records()
    initial = SIZING[service] if capacity is None else capacity
    workers = Workers(initial)

    async def control(request: Request) -> Response:
        return JSONResponse(
            {
                "service": service,
                "fault": chaos.fault.to_mapping(),
                "actions": {a.value: n for a, n in chaos.counts.items()},
                "load": workers.figures(),
            }
            | records.summary()
        )

    async def get_capacity(request: Request) -> Response:
        return JSONResponse({"capacity": workers.capacity.to_mapping()})

    async def set_capacity(request: Request) -> Response:
        try:
            workers.configure(workers.capacity.changed(await _json_object(request)))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": "bad_capacity", "detail": str(exc)}, status_code=422)
        return JSONResponse({"capacity": workers.capacity.to_mapping()})

    async def set_fault(request: Request) -> Response:
        try:
            fault = chaos.set(Fault.from_mapping(await _json_object(request)))
        except (ValueError, TypeError, ConfigError) as exc:
            return JSONResponse({"error": "bad_fault", "detail": str(exc)}, status_code=422)
        return JSONResponse({"fault": fault.to_mapping()})

    async def clear_fault(request: Request) -> Response:
        chaos.clear()
        return JSONResponse({"fault": chaos.fault.to_mapping()})

    async def reset(request: Request) -> Response:
        # The queue is emptied (its requests answered 503): what a scenario
        # left queued must not be served into the next one.
        nonlocal records
        flushed = workers.reset(initial)
        records = Records()
        return JSONResponse({"reset": True, "flushed": flushed})

    routes = [
        Route(CONTROL, control, methods=["GET"]),
        Route(f"{CONTROL}/fault", set_fault, methods=["PUT"]),
        Route(f"{CONTROL}/fault", clear_fault, methods=["DELETE"]),
        Route(f"{CONTROL}/capacity", get_capacity, methods=["GET"]),
        Route(f"{CONTROL}/capacity", set_capacity, methods=["PUT"]),
        Route(f"{CONTROL}/reset", reset, methods=["POST"]),
        *_service_routes(service, lambda: records),
    ]
    app = Starlette(routes=routes)
    return FaultMiddleware(app, chaos, lambda: records, workers)


def _service_routes(service: str, records_of: Any) -> list[Route]:  # noqa: C901 - one small handler per endpoint
    async def charge(request: Request) -> Response:
        body = await _json(request)
        if (
            body is None
            or not isinstance(body.get("order_id"), str)
            or not isinstance(body.get("amount_cents"), int)
        ):
            return JSONResponse(
                {
                    "error": "bad_request",
                    "detail": "order_id (str) and amount_cents (int) required",
                },
                status_code=400,
            )
        records = records_of()
        key = request.headers.get("idempotency-key")
        with records.lock:
            if key is not None and key in records.charges:
                return JSONResponse(records.charges[key] | {"replayed": True})
            charge = {
                "charge_id": uuid.uuid4().hex,
                "order_id": body["order_id"],
                "amount_cents": body["amount_cents"],
            }
            records.charges[key or charge["charge_id"]] = charge
            records.charges_per_order[body["order_id"]] += 1
        return JSONResponse(charge, status_code=201)

    async def reserve(request: Request) -> Response:
        body = await _json(request)
        if body is None or not isinstance(body.get("order_id"), str):
            return JSONResponse(
                {"error": "bad_request", "detail": "order_id (str) required"}, status_code=400
            )
        records = records_of()
        with records.lock:
            records.reservations += 1
        return JSONResponse(
            {"reservation_id": uuid.uuid4().hex, "order_id": body["order_id"]}, status_code=201
        )

    async def event(request: Request) -> Response:
        body = await _json(request)
        if body is None or not isinstance(body.get("event_id"), str):
            return JSONResponse(
                {"error": "bad_request", "detail": "event_id (str) required"}, status_code=400
            )
        records = records_of()
        with records.lock:
            records.events.append(body["event_id"])
        return JSONResponse({"accepted": body["event_id"]}, status_code=202)

    async def compensate(request: Request) -> Response:
        # Refunds (payment) and releases (inventory) undo half of an order
        # whose other half failed; they arrive through the service's outbox,
        # by order id: the service may not know whether (or as what) the
        # charge was made, when its response was lost. Repeats are harmless.
        body = await _json(request)
        target = None if body is None else body.get("order_id")
        if not isinstance(target, str):
            return JSONResponse(
                {"error": "bad_request", "detail": "order_id (str) required"}, status_code=400
            )
        records = records_of()
        with records.lock:
            (records.refunds if service == "payment" else records.releases).append(target)
        return JSONResponse({"compensated": target}, status_code=202)

    async def recommend(request: Request) -> Response:
        user = request.query_params.get("user_id", "anonymous")
        start = sum(map(ord, user)) % len(CATALOGUE)
        items = [CATALOGUE[(start + 7 * i) % len(CATALOGUE)] for i in range(5)]
        return JSONResponse({"user_id": user, "items": items})

    return {
        "payment": [
            Route("/charges", charge, methods=["POST"]),
            Route("/refunds", compensate, methods=["POST"]),
        ],
        "inventory": [
            Route("/reservations", reserve, methods=["POST"]),
            Route("/releases", compensate, methods=["POST"]),
        ],
        "notification": [Route("/notifications", event, methods=["POST"])],
        "analytics": [Route("/events", event, methods=["POST"])],
        "recommendations": [Route("/recommendations", recommend, methods=["GET"])],
    }[service]


async def _json_object(request: Request) -> dict[str, Any]:
    """A control request's JSON object body (empty: ``{}``).

    Raises:
        ValueError: Not JSON.
        TypeError: JSON that is not an object.
    """
    data = json.loads(await request.body() or b"{}")
    if not isinstance(data, dict):
        msg = "a JSON object"
        raise TypeError(msg)
    return data


async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


DEADLINE_HEADER_BYTES = DEADLINE_HEADER.lower().encode("latin-1")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class FaultMiddleware:
    """Apply the simulator's current fault and capacity to every request but the control API."""

    def __init__(
        self, app: Any, chaos: Chaos, records_of: Any, workers: Workers | None = None
    ) -> None:
        self.app = app
        self.chaos = chaos
        self.records_of = records_of
        self.workers = workers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL):
            await self.app(scope, receive, send)
            return
        self.records_of().arrived(scope["path"], _header(scope, DEADLINE_HEADER_BYTES))
        decision = self.chaos.decide()
        action = decision.action
        workers = self.workers
        # A 429 (a rate limiter) or another 4xx refusal is answered at the door.
        at_the_door = action in (Action.HANG, Action.DROP) or (
            action is Action.FAIL and decision.status < 500
        )
        if workers is None or not workers.capacity.limited or at_the_door:
            await self._answer(decision, scope, receive, send)
            return
        await self._queued(workers, decision, scope, receive, send)

    async def _answer(
        self, decision: Decision, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """The infinite-capacity path: wait the fault's delay, then act."""
        if decision.delay:
            await asyncio.sleep(decision.delay)
        action = decision.action
        if action is Action.HANG:
            await _until_disconnected(receive)
            return
        if action is Action.DROP:
            await _drop(send, receive)
            return
        if action is Action.FAIL:
            await _fail(send, decision)
            return
        if action is Action.LOSE_RESPONSE:
            await self.app(scope, receive, swallow)
            await _drop(send, receive)
            return
        await self.app(scope, receive, send)

    def _latency(self) -> float:
        # Drawn when the work starts, from the fault in force then: a slowdown
        # that has ended no longer slows the requests that queued during it.
        fault = self.chaos.fault
        jitter = fault.jitter * random.random() if fault.jitter else 0.0  # noqa: S311
        return fault.latency + jitter

    async def _queued(
        self, workers: Workers, decision: Decision, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """Wait for a worker, work, then answer -- or do the work for nobody."""
        body = await read_body(receive)
        if body is None:
            return  # the caller left halfway through its request: nothing to do
        gone = asyncio.Event()
        watch = asyncio.create_task(watch_disconnect(receive, gone))
        try:
            present = await workers.serve(self._latency, gone)
        except Refused:
            if not gone.is_set():
                await _fail(send, Decision(0.0, Action.FAIL, 503, {"Retry-After": "1"}))
            return
        except Gone:
            return  # the server noticed the caller leave, and stopped
        finally:
            watch.cancel()
        again = replay(body, receive)
        action = decision.action
        if action is Action.FAIL:
            if present:
                await _fail(send, decision)
            return
        if not present or action is Action.LOSE_RESPONSE:
            # The work is done all the same: a charge is committed that its
            # caller will never hear of (and a retry may make a second one).
            await self.app(scope, again, swallow)
            if present:
                await _drop(send, receive)
            return
        await self.app(scope, again, send)


async def _fail(send: Any, decision: Decision) -> None:
    body = json.dumps({"error": "injected", "status": decision.status}).encode()
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in decision.headers.items()]
    await send({"type": "http.response.start", "status": decision.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _until_disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drop(send: Any, receive: Any) -> None:
    """Close the connection without a response.

    ASGI cannot say this; uvicorn's ``send`` is a method of its request cycle,
    which holds the transport (same approach as tests/integrations/downstream.py).
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        msg = "dropping a connection needs uvicorn's h11 server"
        raise RuntimeError(msg)
    transport.close()
    await _until_disconnected(receive)


def capacity_of(service: str, changes: str, *, unlimited: bool = False) -> Capacity:
    """A service's default sizing with the command line's changes (a JSON object).

    Raises:
        ValueError: Not JSON, or a bad field; the message names it.
        TypeError: JSON that is not an object.
    """
    data = json.loads(changes)
    if not isinstance(data, dict):
        msg = "--capacity must be a JSON object"
        raise TypeError(msg)
    if unlimited:
        data["workers"] = None
    return SIZING[service].changed(data)


def main(argv: list[str] | None = None) -> None:
    """Run one simulator with uvicorn on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--capacity",
        default="{}",
        help="JSON changes to the service's default sizing, e.g. '{\"workers\": 2}'",
    )
    parser.add_argument(
        "--unlimited", action="store_true", help="no queue: every request only sleeps"
    )
    args = parser.parse_args(argv)
    try:
        capacity = capacity_of(args.service, args.capacity, unlimited=args.unlimited)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    uvicorn.run(
        create_app(args.service, capacity=capacity),
        host="127.0.0.1",
        port=args.port,
        http="h11",  # _drop() knows h11's request cycle
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
