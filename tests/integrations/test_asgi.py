"""The ASGI integration in-process: deadline header, enforcement, error answers, degraded headers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from seawall import (
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    Criticality,
    DeadlineExceeded,
    Dependency,
    DependencyUnavailable,
    Fallback,
    MemoryStaleStore,
    RejectedError,
    remaining,
)
from seawall.events import Listeners
from seawall.fallback import DegradationRecord, Degraded
from seawall.health import Check, Health
from seawall.integrations._headers import DEADLINE_HEADER
from seawall.integrations.asgi import (
    DeadlineMiddleware,
    degraded_header,
    error_answer,
    health_routes,
    install_exception_handlers,
)
from seawall.testing import FakeClock
from seawall.timeouts import timeout

DEFAULT = 7.0  # the server default in these tests: distinct from every header value


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def down(*_: object) -> Any:
    raise ConnectionError("connection refused by 10.0.0.9")


class Service:
    """A small app whose handlers report what they see and raise what they are told."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.cancelled = 0
        self.calls = 0
        self.recommendations = Dependency(
            "recommendations",
            criticality=Criticality.DEGRADABLE,
            fallback=Fallback.value(["popular"]),
            listeners=Listeners(),
        )
        self.prices = Dependency(
            "prices",
            criticality=Criticality.DEGRADABLE,
            fallback=Fallback.stale(300, MemoryStaleStore(clock=self.clock)),
            clock=self.clock,
            listeners=Listeners(),
        )
        self.payment_breaker = CircuitBreaker(
            "payment", minimum_calls=1, open_duration=29.2, listeners=Listeners()
        )
        self.payment = Dependency("payment", breaker=self.payment_breaker, listeners=Listeners())
        self.price_is_up = True

    async def left(self, request: Request) -> JSONResponse:
        self.calls += 1
        return JSONResponse({"remaining": remaining()})

    async def slow(self, request: Request) -> PlainTextResponse:
        self.calls += 1
        try:
            await asyncio.sleep(float(request.query_params.get("s", "5")))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return PlainTextResponse("done")

    async def stream(self, request: Request) -> StreamingResponse:
        async def body() -> Any:
            yield b"head,"
            await asyncio.sleep(0.15)  # past the 50 ms deadline: the response has begun
            yield b"tail"

        return StreamingResponse(body())

    async def raise_(self, request: Request) -> PlainTextResponse:
        raise ERRORS[request.path_params["kind"]]

    async def recommend(self, request: Request) -> JSONResponse:
        items = await self.recommendations.call(down)
        return JSONResponse({"items": items}, headers={"Cache-Control": "max-age=600", "Age": "3"})

    async def price(self, request: Request) -> JSONResponse:
        async def fetch(sku: str) -> float:
            if not self.price_is_up:
                raise ConnectionError
            return 9.5

        return JSONResponse({"price": await self.prices.call(fetch, "sku-1")})

    async def both(self, request: Request) -> JSONResponse:
        a = await self.price(request)
        b = await self.recommend(request)
        return JSONResponse({"a": json.loads(bytes(a.body)), "b": json.loads(bytes(b.body))})

    def sync_recommend(self, request: Request) -> JSONResponse:
        """A sync endpoint: Starlette runs it in a thread, with a copy of the context."""

        def blocking_down() -> Any:
            raise ConnectionError

        return JSONResponse({"items": self.recommendations.call_sync(blocking_down)})

    async def pay(self, request: Request) -> JSONResponse:
        return JSONResponse({"paid": await self.payment.call(down)})

    def app(
        self,
        *,
        handlers: bool = True,
        handler_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Starlette:
        app = Starlette(
            routes=[
                Route("/left", self.left),
                Route("/slow", self.slow),
                Route("/stream", self.stream),
                Route("/raise/{kind}", self.raise_),
                Route("/recommend", self.recommend),
                Route("/sync-recommend", self.sync_recommend),
                Route("/price", self.price),
                Route("/both", self.both),
                Route("/pay", self.pay),
            ]
        )
        options.setdefault("default", DEFAULT)
        app.add_middleware(DeadlineMiddleware, **options)
        if handlers:
            install_exception_handlers(app, **(handler_options or {}))
        return app


ERRORS: dict[str, Exception] = {
    "unavailable": DependencyUnavailable(
        name="payment", cause=ConnectionError("10.0.0.9 refused"), retry_after=11.2
    ),
    "unavailable-unknown": DependencyUnavailable(name="payment", cause=OSError("secret")),
    "unavailable-soon": DependencyUnavailable(name="payment", retry_after=0.01),
    "circuit": CircuitOpenError(name="inventory", retry_after=3.0),
    "forced": CircuitOpenError(name="inventory", retry_after=None),
    "bulkhead": BulkheadFullError(name="inventory", max_concurrent=4),
    "rejected": RejectedError("some new kind of rejection"),
    "deadline": DeadlineExceeded(name="inventory", timeout=0.5),
    "deadline-unnamed": DeadlineExceeded(),
}


async def request(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


def get(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response: httpx.Response = run(request(app, path, headers))
    return response


# -- the deadline header -----------------------------------------------------------------


def test_the_header_sets_the_ambient_deadline() -> None:
    response = get(Service().app(), "/left", {DEADLINE_HEADER: "1500"})
    assert response.status_code == 200
    assert 1.3 < response.json()["remaining"] <= 1.5


def test_no_header_means_the_server_default() -> None:
    left = get(Service().app(), "/left").json()["remaining"]
    assert DEFAULT - 0.5 < left <= DEFAULT


def test_a_longer_budget_than_the_server_allows_is_clipped() -> None:
    left = get(Service().app(), "/left", {DEADLINE_HEADER: "600000"}).json()["remaining"]
    assert DEFAULT - 0.5 < left <= DEFAULT


def test_maximum_caps_a_caller_budget_separately() -> None:
    app = Service().app(default=2.0, maximum=10.0)
    assert 9.0 < get(app, "/left", {DEADLINE_HEADER: "60000"}).json()["remaining"] <= 10.0
    assert 1.5 < get(app, "/left").json()["remaining"] <= 2.0


def test_without_a_default_a_request_without_header_has_no_deadline() -> None:
    app = Service().app(default=None)
    assert get(app, "/left").json()["remaining"] is None
    assert 0 < get(app, "/left", {DEADLINE_HEADER: "60000"}).json()["remaining"] <= 60


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "-5",
        "+5",
        "1e400",
        "1e3",
        "",
        " ",
        "inf",
        "NaN",
        "0x10",
        "1.5.5",
        "12ms",
        "9" * 5000,
        "٣",
    ],
)
def test_a_malformed_header_gets_the_server_default(value: str) -> None:
    service = Service()
    raw = [(DEADLINE_HEADER.encode(), value.encode())]

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=service.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/left", headers=raw)

    response = run(main())
    assert response.status_code == 200
    assert DEFAULT - 0.5 < response.json()["remaining"] <= DEFAULT


def test_a_header_of_zero_is_answered_504_without_running_the_handler() -> None:
    service = Service()
    response = get(service.app(), "/left", {DEADLINE_HEADER: "0"})
    assert response.status_code == 504
    assert response.json() == {"error": "deadline_exceeded", "scope": "request"}
    assert service.calls == 0


def test_the_header_name_is_configurable() -> None:
    app = Service().app(header="X-Budget-Ms")
    assert 0.9 < get(app, "/left", {"x-budget-ms": "1000"}).json()["remaining"] <= 1.0


# -- enforcement -------------------------------------------------------------------------


def test_a_handler_that_overruns_is_cancelled_and_answered_504() -> None:
    service = Service()
    started = time.monotonic()
    response = get(service.app(), "/slow?s=5", {DEADLINE_HEADER: "100"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json() == {"error": "deadline_exceeded", "scope": "request"}
    assert response.headers["content-type"] == "application/json"
    assert 0.1 <= elapsed < 1.0
    assert service.cancelled == 1


def test_the_server_default_is_enforced_too() -> None:
    service = Service()
    response = get(service.app(default=0.05), "/slow?s=5")
    assert response.status_code == 504
    assert service.cancelled == 1


def test_without_enforcement_the_deadline_is_only_set() -> None:
    service = Service()
    response = get(service.app(enforce=False), "/slow?s=0.1", {DEADLINE_HEADER: "20"})
    assert response.status_code == 200
    assert response.text == "done"


def test_a_handler_within_its_deadline_is_untouched() -> None:
    response = get(Service().app(), "/slow?s=0.01", {DEADLINE_HEADER: "2000"})
    assert response.status_code == 200


def test_a_started_response_is_not_cut_off() -> None:
    """The deadline bounds the time to the response's start; a streamed body may run past it."""
    response = get(Service().app(), "/stream", {DEADLINE_HEADER: "50"})
    assert response.status_code == 200
    assert response.text == "head,tail"


def test_an_inner_timeout_is_the_application_s_own_504() -> None:
    async def inner(request: Request) -> PlainTextResponse:
        async with timeout(0.01, name="inventory"):
            await asyncio.sleep(1)
        return PlainTextResponse("never")

    app = Starlette(routes=[Route("/", inner)])
    app.add_middleware(DeadlineMiddleware, default=5.0)
    response = get(app, "/")
    assert response.status_code == 504
    assert response.json() == {"error": "deadline_exceeded", "scope": "inventory"}


def test_a_plain_timeout_error_is_not_ours_to_answer() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        get(DeadlineMiddleware(app, default=5.0), "/")


# -- error answers ---------------------------------------------------------------------------

EXPECTED = {
    "unavailable": (
        503,
        {"error": "dependency_unavailable", "dependency": "payment", "retry_after": 12},
        "12",
    ),
    "unavailable-unknown": (  # no wait known: the default hint, 5 s
        503,
        {"error": "dependency_unavailable", "dependency": "payment", "retry_after": 5},
        "5",
    ),
    "unavailable-soon": (
        503,
        {"error": "dependency_unavailable", "dependency": "payment", "retry_after": 1},
        "1",
    ),
    "circuit": (503, {"error": "circuit_open", "dependency": "inventory", "retry_after": 3}, "3"),
    "forced": (503, {"error": "circuit_open", "dependency": "inventory", "retry_after": 5}, "5"),
    "bulkhead": (503, {"error": "bulkhead_full", "dependency": "inventory"}, None),
    "rejected": (503, {"error": "rejected"}, None),
    "deadline": (504, {"error": "deadline_exceeded", "scope": "inventory"}, None),
    "deadline-unnamed": (504, {"error": "deadline_exceeded"}, None),
}


@pytest.mark.parametrize("handlers", [True, False], ids=["handlers", "middleware-only"])
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_errors_are_answered_with_json_and_retry_after(kind: str, handlers: bool) -> None:
    status, body, retry_after = EXPECTED[kind]
    response = get(Service().app(handlers=handlers), f"/raise/{kind}")
    assert response.status_code == status
    assert response.json() == body
    assert response.headers.get("retry-after") == retry_after
    for leak in ("10.0.0.9", "refused", "secret", "ConnectionError", "OSError"):
        assert leak not in response.text


@pytest.mark.parametrize("handlers", [True, False], ids=["handlers", "middleware-only"])
@pytest.mark.parametrize(("default_retry_after", "expected"), [(None, None), (2.5, 3), (120, 120)])
def test_the_default_retry_after_is_configurable(
    handlers: bool, default_retry_after: float | None, expected: int | None
) -> None:
    """An unknown wait gets the configured hint (whole seconds, rounded up), or none at all."""
    options = {"default_retry_after": default_retry_after}
    app = Service().app(handlers=handlers, handler_options=options, **options)
    for kind, code, name in (
        ("unavailable-unknown", "dependency_unavailable", "payment"),
        ("forced", "circuit_open", "inventory"),
    ):
        response = get(app, f"/raise/{kind}")
        body: dict[str, Any] = {"error": code, "dependency": name}
        if expected is not None:
            body["retry_after"] = expected
        assert (response.status_code, response.json()) == (503, body)
        assert response.headers.get("retry-after") == (None if expected is None else str(expected))
    known = get(app, "/raise/circuit")  # a known wait is sent as it is, whatever the default
    assert known.headers["retry-after"] == "3"
    bulkhead = get(app, "/raise/bulkhead")  # a full bulkhead is not an outage: no hint
    assert "retry-after" not in bulkhead.headers


@pytest.mark.parametrize("value", [-1, 0, float("inf"), float("nan"), "5", True])
def test_a_bad_default_retry_after_is_refused(value: object) -> None:
    """Construction fails with a ConfigError naming the field, wherever it is given."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    match = "default_retry_after must be a finite number of seconds > 0"
    with pytest.raises(ConfigError, match=match):
        DeadlineMiddleware(app, default_retry_after=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        install_exception_handlers(Starlette(), default_retry_after=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        error_answer(ERRORS["forced"], default_retry_after=value)  # type: ignore[arg-type]


def test_the_handlers_alone_without_the_middleware() -> None:
    app = Starlette(routes=[Route("/raise/{kind}", Service().raise_)])
    install_exception_handlers(app)
    response = get(app, "/raise/circuit")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"


def test_a_real_critical_dependency_failing_then_rejected() -> None:
    """The first call fails (no wait known: the default hint); the breaker opens; the next is
    rejected with the breaker's wait."""
    service = Service()
    app = service.app()

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/pay"), await client.get("/pay")

    failed, rejected = run(main())
    assert failed.status_code == 503
    assert failed.json() == {
        "error": "dependency_unavailable",
        "dependency": "payment",
        "retry_after": 5,
    }
    assert failed.headers["retry-after"] == "5"
    assert rejected.status_code == 503
    assert rejected.json() == {
        "error": "dependency_unavailable",
        "dependency": "payment",
        "retry_after": 30,
    }
    assert rejected.headers["retry-after"] == "30"


def test_a_dependency_call_cut_by_the_request_deadline_is_504_by_its_own_timeout_503() -> None:
    """The request's budget running out is a 504; a dependency's own shorter timeout is its 503."""

    async def hang() -> None:
        await asyncio.sleep(10)

    payment = Dependency(
        "payment",
        breaker=CircuitBreaker("payment", listeners=Listeners()),
        listeners=Listeners(),
    )
    quick = Dependency("inventory", timeout=0.02, listeners=Listeners())

    async def pay(request: Request) -> JSONResponse:
        return JSONResponse(await payment.call(hang))

    async def reserve(request: Request) -> JSONResponse:
        return JSONResponse(await quick.call(hang))

    app = Starlette(routes=[Route("/pay", pay), Route("/reserve", reserve)])
    app.add_middleware(DeadlineMiddleware, default=0.1)
    install_exception_handlers(app)
    paid = get(app, "/pay")
    assert paid.status_code == 504
    assert paid.json() == {"error": "deadline_exceeded", "scope": "request"}
    reserved = get(app, "/reserve")
    assert reserved.status_code == 503
    assert reserved.json() == {
        "error": "dependency_unavailable",
        "dependency": "inventory",
        "retry_after": 5,
    }


def test_error_answer_maps_nothing_else() -> None:
    assert error_answer(ValueError("x")) is None
    endless = DependencyUnavailable(name="p", retry_after=float("inf"))
    assert error_answer(endless).headers == {"Retry-After": "5"}  # type: ignore[union-attr]
    assert error_answer(endless, default_retry_after=None).headers == {}  # type: ignore[union-attr]


# -- degraded responses --------------------------------------------------------------------------


def test_a_fallback_answer_is_marked_degraded() -> None:
    response = get(Service().app(), "/recommend")
    assert response.status_code == 200
    assert response.json() == {"items": ["popular"]}
    assert response.headers["seawall-degraded"] == "recommendations;kind=value"
    assert response.headers["cache-control"] == "no-store"  # replaces the handler's max-age
    assert "age" not in response.headers  # the handler's Age is dropped: no stale data


def test_a_stale_answer_carries_its_age() -> None:
    service = Service()

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=service.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            fresh = await client.get("/price")
            service.price_is_up = False
            service.clock.advance(41.2)
            return fresh, await client.get("/price")

    fresh, stale = run(main())
    assert fresh.json() == stale.json() == {"price": 9.5}
    for name in ("seawall-degraded", "age"):
        assert name not in fresh.headers
    assert stale.headers["seawall-degraded"] == "prices;kind=stale;age=42"
    assert stale.headers["age"] == "42"
    # max-stale is a request directive that caches ignore on a response: it
    # tells the client how stale; no-store keeps the answer out of caches.
    assert stale.headers["cache-control"] == "no-store, max-stale=42"


def test_every_degraded_dependency_is_named_once() -> None:
    service = Service()

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=service.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.get("/price")
            service.price_is_up = False
            service.clock.advance(5)
            await client.get("/both")
            return await client.get("/both")

    response = run(main())
    assert response.headers["seawall-degraded"] == (
        "prices;kind=stale;age=5, recommendations;kind=value"
    )
    assert response.headers["age"] == "5"


def test_a_sync_endpoint_degrading_in_a_thread_is_marked() -> None:
    response = get(Service().app(), "/sync-recommend")
    assert response.headers["seawall-degraded"] == "recommendations;kind=value"


def test_fresh_answers_carry_no_degraded_headers() -> None:
    response = get(Service().app(), "/left")
    for name in ("seawall-degraded", "age", "cache-control"):
        assert name not in response.headers


def test_the_cache_control_of_degraded_answers_is_configurable() -> None:
    response = get(Service().app(degraded_cache_control=None), "/recommend")
    assert response.headers["cache-control"] == "max-age=600"
    assert response.headers["seawall-degraded"] == "recommendations;kind=value"


def test_degraded_header_quotes_names_that_are_not_tokens() -> None:
    record = DegradationRecord()
    record.add(Degraded("price v2", "value", None, "ConnectionError"))
    record.add(Degraded('we"ird\r\n', "stale", 0.2, "ConnectionError"))
    record.add(Degraded("9lives", "call", None, "ConnectionError"))
    assert degraded_header(record) == (
        '"price v2";kind=value, "we\\"ird??";kind=stale;age=1, "9lives";kind=call'
    )


# -- other traffic, FastAPI, health routes, configuration -------------------------------------------


def test_lifespan_and_websocket_traffic_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        seen.append(str(remaining()))

    async def noop(*_: Any) -> Any:
        return None

    middleware = DeadlineMiddleware(app)
    run(middleware({"type": "lifespan"}, noop, noop))
    run(middleware({"type": "websocket", "headers": [(b"seawall-deadline-ms", b"5")]}, noop, noop))
    assert seen == ["lifespan", "None", "websocket", "None"]


def test_fastapi() -> None:
    app = FastAPI()
    app.add_middleware(DeadlineMiddleware, default=DEFAULT)
    install_exception_handlers(app)

    async def ping() -> bool:
        return True

    app.router.routes.extend(health_routes(Health([Check("ok", ping)])))

    @app.get("/raise")
    async def raise_() -> None:
        raise ERRORS["circuit"]

    @app.get("/left")
    async def left_endpoint() -> dict[str, Any]:
        return {"remaining": remaining()}

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.get("/raise"),
                await client.get("/left", headers={DEADLINE_HEADER: "800"}),
                await client.get("/healthz"),
                await client.get("/readyz"),
            ]

    raised, left, live, ready = run(main())
    assert raised.status_code == 503
    assert raised.headers["retry-after"] == "3"
    assert 0.6 < left.json()["remaining"] <= 0.8
    assert live.json() == {"status": "ok", "checks": {}}
    assert ready.status_code == 200


def test_health_routes_answer_200_or_503_without_caching() -> None:
    failing = Check("db", down)
    health = Health([failing], cache_ttl=0)
    app = Starlette(routes=health_routes(health, startup=None))

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(p) for p in ("/healthz", "/readyz", "/startupz")]

    live, ready, startup = run(main())
    assert (live.status_code, ready.status_code, startup.status_code) == (200, 503, 404)
    assert ready.json() == {
        "status": "failed",
        "checks": {
            "db": {
                "status": "failed",
                "latency_ms": ready.json()["checks"]["db"]["latency_ms"],
                "required": True,
            }
        },
    }
    assert ready.headers["cache-control"] == "no-store"
    assert "10.0.0.9" not in ready.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default": 0}, "default must be a finite number of seconds > 0"),
        ({"default": float("inf")}, "default must be"),
        ({"maximum": -1}, "maximum must be"),
        ({"header": ""}, "header must be a non-empty ASCII string"),
        ({"header": "Frist-Ü"}, "header must be"),
    ],
)
def test_bad_middleware_options(options: dict[str, Any], message: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ConfigError, match=message):
        DeadlineMiddleware(app, **options)
