"""LoadShedMiddleware in-process: priorities, exempt probes, 503 answers, own latency.

Requests go through httpx's ASGI transport into a Starlette app whose
handlers block on events the test controls, so "requests in flight" is
exact; the reference service's overload scenario runs it on a real server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from seawall import AdaptiveLimit, ConfigError, Criticality, Dependency
from seawall.core.limit import SampleWindowConfig
from seawall.events import Listeners, LoadShed
from seawall.integrations.shedding import LoadShedMiddleware, priority_of
from seawall.testing import FakeClock, RecordingListener

EACH_CALL = SampleWindowConfig(min_time=1e-9, max_time=1e-9, min_samples=1, min_rtt=0.0)


class Gate:
    """Handlers that wait until the test opens their gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.inside = 0

    async def hold(self, request: Request) -> JSONResponse:
        self.inside += 1
        try:
            await self.open.wait()
        finally:
            self.inside -= 1
        return JSONResponse({"path": request.url.path})


def app_with(gate: Gate, **options: Any) -> tuple[LoadShedMiddleware, httpx.AsyncClient]:
    routes = [
        Route("/orders", gate.hold, methods=["GET", "POST"]),
        Route("/products", gate.hold),
        Route("/recommendations", gate.hold),
        Route("/healthz", gate.hold),
    ]
    shedder = LoadShedMiddleware(Starlette(routes=routes), **options)
    transport = httpx.ASGITransport(app=shedder)  # type: ignore[arg-type]
    return shedder, httpx.AsyncClient(transport=transport, base_url="http://orders")


def fixed(n: int, **options: Any) -> AdaptiveLimit:
    return AdaptiveLimit("orders", initial=n, min=n, max=n, listeners=Listeners(), **options)


async def until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"limit": 5}, "limit must be an AdaptiveLimit"),
        ({"routes": {"orders": 0}}, "routes: 'orders' must be '/prefix' or 'METHOD /prefix'"),
        ({"routes": {"/orders": -1}}, "must map to a priority >= 0 or a Criticality"),
        ({"shares": (0.5, 1.0)}, "shares must not increase with priority"),
        ({"shares": (1.0, 0.0)}, "shares must be numbers in (0, 1]"),
        ({"retry_after": 0}, "retry_after"),
        ({"exempt": ("healthz",)}, "exempt must be path prefixes"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LoadShedMiddleware(Starlette(), **options)
    assert message in str(caught.value)


def test_priorities_from_routes_and_criticality() -> None:
    shedder = LoadShedMiddleware(
        Starlette(),
        routes={
            "/recommendations": Criticality.DEGRADABLE,
            "POST /orders": 0,
            "/orders": 2,
            "/orders/export": Criticality.BACKGROUND,
        },
        default_priority=1,
    )
    assert shedder.priority({"path": "/recommendations", "method": "GET"}) == (
        "/recommendations",
        1,
    )
    assert shedder.priority({"path": "/orders", "method": "POST"}) == ("POST /orders", 0)
    assert shedder.priority({"path": "/orders/1", "method": "GET"}) == ("/orders", 2)
    assert shedder.priority({"path": "/orders/export", "method": "POST"}) == (
        "/orders/export",
        2,
    )
    assert shedder.priority({"path": "/products/1", "method": "GET"}) == ("", 1)
    assert [priority_of(c) for c in Criticality] == [0, 1, 2]


def test_the_least_important_are_shed_first_and_probes_never() -> None:
    gate = Gate()
    listeners = Listeners()
    shedder, client = app_with(
        gate,
        limit=fixed(4),
        routes={"/recommendations": Criticality.DEGRADABLE},
        listeners=listeners,
    )

    async def main() -> None:
        async with client:
            held = [asyncio.create_task(client.get("/products")) for _ in range(3)]
            await until(lambda: gate.inside == 3)
            with RecordingListener(listeners) as events:
                # 3 of 4 in flight: a degradable request (share 0.75 -> 3) is shed...
                shed = await client.get("/recommendations")
            assert shed.status_code == 503
            assert shed.headers["retry-after"] == "1"
            assert shed.json() == {"error": "overloaded", "service": "service", "retry_after": 1}
            [event] = events.of_type(LoadShed)
            assert (event.route, event.priority, event.limit, event.in_flight) == (
                "/recommendations",
                1,
                3,
                3,
            )
            # ...a critical one still gets the last permit...
            held.append(asyncio.create_task(client.get("/orders")))
            await until(lambda: gate.inside == 4)
            assert (await client.get("/products")).status_code == 503  # ...then nothing more,
            probe = asyncio.create_task(client.get("/healthz"))  # but the probes.
            await until(lambda: gate.inside == 5)
            assert shedder.limit.in_flight == 4  # a probe is not counted
            gate.open.set()
            answers = await asyncio.gather(*held, probe)
            assert [a.status_code for a in answers] == [200] * 5

    asyncio.run(main())
    assert shedder.shed == {1: 1, 0: 1}
    assert shedder.limit.in_flight == 0


def test_the_limit_learns_the_services_own_latency_not_its_dependencies() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(
        "orders",
        algorithm="aimd",
        initial=4,
        timeout=1.0,
        window=EACH_CALL,
        clock=clock,
        listeners=Listeners(),
    )
    payment = Dependency("payment", clock=clock, listeners=Listeners())

    async def charge() -> None:
        clock.advance(5.0)  # payment is slow: 5 s inside the dependency

    async def order(request: Request) -> JSONResponse:
        clock.advance(0.1)  # the service's own work
        await payment.call(charge)
        return JSONResponse({"ok": True})

    async def heavy(request: Request) -> JSONResponse:
        clock.advance(2.0)  # the service's own work, over the AIMD timeout
        return JSONResponse({"ok": True})

    async def broken(request: Request) -> JSONResponse:
        clock.advance(3.0)
        return JSONResponse({"error": "dependency_unavailable"}, status_code=503)

    app = Starlette(
        routes=[Route("/orders", order), Route("/heavy", heavy), Route("/broken", broken)]
    )
    shedder = LoadShedMiddleware(app, limit=limit, clock=clock)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedder),  # type: ignore[arg-type]
        base_url="http://orders",
    )

    async def main() -> None:
        async with client:
            assert (await client.get("/orders")).status_code == 200
            assert limit.limit == 4  # 0.1 s of its own: 5.1 s in all would have been a drop
            assert (await client.get("/broken")).status_code == 503
            assert limit.limit == 4  # the application's 503: no lesson
            assert (await client.get("/heavy")).status_code == 200
            assert limit.limit == 3  # 2 s of its own work: over the timeout

    asyncio.run(main())


def test_an_app_that_raises_gives_its_permit_back() -> None:
    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("a bug")

    shedder = LoadShedMiddleware(Starlette(routes=[Route("/x", boom)]), limit=fixed(2))
    transport = httpx.ASGITransport(app=shedder, raise_app_exceptions=False)  # type: ignore[arg-type]

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
            assert (await client.get("/x")).status_code == 500

    asyncio.run(main())
    assert shedder.limit.in_flight == 0


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    shedder = LoadShedMiddleware(app, limit=fixed(1))
    asyncio.run(shedder({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert json.loads(shedder._body)["error"] == "overloaded"


def test_a_request_waiting_on_a_dependency_is_not_counted_in_flight() -> None:
    """Little's law on the service's own work: waiting on payment costs it no capacity."""
    gate = asyncio.Event()
    payment = Dependency("payment", listeners=Listeners())
    counted: list[int] = []
    shedder: LoadShedMiddleware

    async def charge() -> None:
        counted.append(shedder.limit.in_flight)
        await gate.wait()

    async def order(request: Request) -> JSONResponse:
        counted.append(shedder.limit.in_flight)
        await payment.call(charge)
        return JSONResponse({"ok": True})

    async def left_behind(request: Request) -> JSONResponse:
        # A task that outlives its request, still in a dependency call.
        asyncio.get_running_loop().create_task(payment.call(charge))
        await asyncio.sleep(0)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/orders", order), Route("/later", left_behind)])
    shedder = LoadShedMiddleware(app, limit=fixed(2))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shedder),  # type: ignore[arg-type]
        base_url="http://orders",
    )

    async def main() -> None:
        async with client:
            # Five orders wait on payment at once: a limit of 2 admits them all.
            waiting = [asyncio.create_task(client.get("/orders")) for _ in range(5)]
            await until(lambda: len(counted) == 10)
            assert shedder.limit.in_flight == 0
            assert (await client.get("/later")).status_code == 200
            assert shedder.limit.in_flight == 0
            gate.set()
            assert [r.status_code for r in await asyncio.gather(*waiting)] == [200] * 5
            await asyncio.sleep(0.01)
            assert shedder.limit.in_flight == 0  # the task left behind took nothing back

    asyncio.run(main())
    # Each order counted itself alone while doing its own work, and nothing while waiting.
    assert max(counted) <= 1
