"""The order API: thin route handlers over a Wiring (see wiring.py).

* ``POST /orders`` reserves inventory and charges payment at once, stores the
  order in one transaction, then hands the confirmation and the analytics
  event to durable outboxes. A failure of a critical step is a 503 with
  ``Retry-After``, never half an order: what was done is undone. With an
  ``Idempotency-Key`` header, the same key and body within a day get the
  first answer again (``Idempotent-Replayed: true``), never a second order.
* ``GET /products/{id}`` reads the database; when it fails, the last good value
  comes from the cache, marked degraded ("prices may be slightly out of date"),
  if it is at most ``max_stale`` old (10 minutes, policies.toml): an older one
  is not served, and the log line of the 503 says how old it was. Only
  products are cached, never a "not found". The cache is this process's
  unless ``REDIS_URL`` is set: then every replica serves what any one read.
* ``GET /recommendations`` is personalised, or the popular items when the
  recommendation service fails, marked degraded.
* ``/healthz``, ``/readyz``, ``/startupz``, ``/metrics``; and with ``ORDERS_ADMIN=1``
  a ``/_admin`` API for the demo and the tests (database faults, breaker reset,
  the service's own capacity and load).

Each request first does the service's own work (:class:`~.capacity.WorkStage`:
unlimited by default, sized with ``ORDERS_CAPACITY`` or ``PUT
/_admin/capacity`` for the overload scenario). Wired with seawall, the
service sheds load above what it can serve (``[service.shedding]`` in
policies.toml): recommendations first, orders last, probes never.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from seawall import AdaptiveLimit, Criticality
from seawall.chaos import Fault
from seawall.core.limit import SampleWindowConfig
from seawall.errors import ConfigError
from seawall.events import Listeners
from seawall.integrations import prometheus
from seawall.integrations.asgi import (
    BodyLimitMiddleware,
    DeadlineMiddleware,
    health_routes,
    install_exception_handlers,
)
from seawall.integrations.logging import LoggingListener
from seawall.integrations.shedding import DEFAULT_EXEMPT, LoadShedMiddleware

from . import db
from .capacity import Capacity, Workers, WorkStage
from .policies import Policies
from .settings import Settings
from .wiring import gather_or_compensate, make_wiring

STALE_NOTICE = "prices may be slightly out of date"


class Item(BaseModel):
    """One line of an order."""

    sku: str = Field(min_length=1, max_length=32)
    qty: int = Field(ge=1, le=100)


class OrderIn(BaseModel):
    """A new order."""

    #: A real order, for the spec's readers and the fuzzers that start from examples.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": "u-1", "items": [{"sku": "sku-001", "qty": 2}]}],
        }
    )

    user_id: str = Field(min_length=1, max_length=100)
    items: list[Item] = Field(min_length=1, max_length=50)


class OrderOut(BaseModel):
    """A confirmed order."""

    order_id: str
    total_cents: int
    charge_id: str
    status: str


class ProductOut(BaseModel):
    """A product; ``notice`` and ``age_seconds`` only when it is a stale copy."""

    id: str
    name: str
    price_cents: int
    degraded: bool
    notice: str | None = None
    age_seconds: float | None = None


class RecommendationsOut(BaseModel):
    """Recommended products, or the popular ones when ``degraded``."""

    user_id: str
    items: list[str]
    degraded: bool


class ErrorOut(BaseModel):
    """Every error answer: a code (``error``), and what it concerns."""

    model_config = ConfigDict(extra="allow")

    error: str


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": ErrorOut, "description": description}
    if retry_after:
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}
        }
    return answer


#: The answers every route may give besides its own: an unavailable dependency
#: or the service shedding load (503), a spent deadline (504).
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: _error(
        "A dependency is unavailable (dependency_unavailable, circuit_open, bulkhead_full,"
        " rejected) or the service is overloaded (overloaded, busy)",
        retry_after=True,
    ),
    504: _error("The request's deadline passed (deadline_exceeded)"),
}

#: An Idempotency-Key: 1 to 255 visible ASCII characters (RFC 9110's token is
#: narrower; a UUID, a ULID or a client's own id all fit).
_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; its wiring starts with the app's lifespan."""
    settings = settings or Settings.from_env()
    listeners = Listeners()  # this app's own: two apps in one process stay apart
    wiring = make_wiring(settings, listeners)
    registry = CollectorRegistry()
    logging_listener = LoggingListener()
    logging_listener.install(listeners)
    policies = Policies.load(settings.policies)
    own = Capacity().changed(settings.capacity)
    workers = Workers(own)
    shedder = _shedder(settings, policies, listeners)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await wiring.start()
        metrics = prometheus.install(
            getattr(wiring, "registry", None), registry=registry, listeners=listeners
        )
        if shedder is not None:
            metrics.track(shedder)
        app.state.wiring = wiring
        app.state.health = wiring.health
        try:
            yield
        finally:
            wiring.health.mark_draining()
            metrics.close()
            await wiring.close()

    app = FastAPI(title="orders", lifespan=lifespan)
    # Starlette runs the middleware added last first: shedding, then the
    # deadline, then the body limit, then the service's own work, then the routes.
    app.add_middleware(WorkStage, workers=workers)
    app.add_middleware(BodyLimitMiddleware, max_bytes=policies.service.max_body)
    # The same request_deadline the Registry checks every dependency against.
    app.add_middleware(DeadlineMiddleware, default=policies.service.request_deadline)
    if shedder is not None:
        shedding = policies.service.shedding
        app.add_middleware(
            LoadShedMiddleware,
            limit=shedder,
            name="orders",
            routes=_priorities(shedding.get("routes", {})),
            retry_after=float(shedding.get("retry_after", 1.0)),
            # The admin API answers the demo's and the tests' questions, overloaded or not.
            exempt=(*DEFAULT_EXEMPT, "/_admin"),
            listeners=listeners,
        )
    install_exception_handlers(app)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]

    _routes(app, wiring, policies)
    app.router.routes.extend(health_routes(_HealthProxy(app)))  # type: ignore[arg-type]

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if settings.admin:
        _admin_routes(app, wiring, workers, own)
    return app


def _shedder(settings: Settings, policies: Policies, listeners: Listeners) -> AdaptiveLimit | None:
    """The adaptive limit of the service's own load shedding (seawall mode only)."""
    shedding = policies.service.shedding
    if settings.mode != "seawall" or not shedding:
        return None
    options = dict(shedding.get("limit", {}))
    if "window" in options:
        options["window"] = SampleWindowConfig(**options["window"])
    return AdaptiveLimit("orders", listeners=listeners, **options)


def _priorities(routes: dict[str, Any]) -> dict[str, int | Criticality]:
    """policies.toml's routes: a criticality's name, or a priority."""
    return {
        route: Criticality(value) if isinstance(value, str) else int(value)
        for route, value in routes.items()
    }


#: Starlette's own errors (an unknown route, a method it does not take, a body
#: it could not read), given the same shape as every other error answer.
_HTTP_ERRORS = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_ERRORS.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": code, "detail": str(exc.detail)[:100]},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _fingerprint(order: OrderIn) -> str:
    """A digest of the validated order: the same order, however it was spelt, is the same."""
    canonical = json.dumps(order.model_dump(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


#: Releases still running after their request was cancelled: the loop holds
#: tasks only weakly, and one collected mid-write would leave its key pending.
_RELEASING: set[asyncio.Future[None]] = set()


async def _to_the_end(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if the request awaiting it is cancelled, and never fail."""
    task = asyncio.ensure_future(work)
    _RELEASING.add(task)
    task.add_done_callback(_released)
    with contextlib.suppress(Exception):
        await asyncio.shield(task)


def _released(task: asyncio.Future[None]) -> None:
    _RELEASING.discard(task)
    if not task.cancelled():
        # Read, so that asyncio does not log it as never retrieved: a key left
        # pending is taken over once abandoned (db.claim_key), nothing is lost.
        task.exception()


def _routes(app: FastAPI, wiring: Any, policies: Policies) -> None:  # noqa: C901 - the routes
    @app.exception_handler(LookupError)
    async def not_found(request: Any, exc: LookupError) -> JSONResponse:
        return JSONResponse({"error": "not_found", "detail": str(exc)[:100]}, status_code=404)

    @app.post(
        "/orders",
        status_code=201,
        response_model=OrderOut,
        responses={
            201: {
                "description": "The order, confirmed (or, for a repeated Idempotency-Key, "
                "the first answer again, with Idempotent-Replayed: true)",
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "true when this is a replayed answer",
                        "schema": {"type": "string"},
                    }
                },
            },
            400: _error("The body is not JSON (malformed_body)"),
            409: _error(
                "A request with this Idempotency-Key is still being served"
                " (idempotency_key_in_use)",
                retry_after=True,
            ),
            413: _error("The body is larger than the service reads (body_too_large)"),
            422: _error(
                "The order is invalid (invalid_request), names products that do not exist"
                " (unknown_products), or reuses an Idempotency-Key with another order"
                " (idempotency_key_reused)"
            ),
            **_UNAVAILABLE,
        },
    )
    async def create_order(
        order: OrderIn,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=_KEY_PATTERN,
                description="Makes the request safe to repeat: the same key and order get"
                " the first answer again, for a day",
            ),
        ] = None,
    ) -> Any:
        key = idempotency_key
        if key is not None:
            claim = await wiring.claim(key, _fingerprint(order))
            if claim.kind == "replay":
                return JSONResponse(
                    claim.answer,
                    status_code=claim.status,
                    headers={"Idempotent-Replayed": "true"},
                )
            if claim.kind == "mismatch":
                return JSONResponse(
                    {"error": "idempotency_key_reused", "detail": "another order used this key"},
                    status_code=422,
                )
            if claim.kind == "pending":
                return JSONResponse(
                    {"error": "idempotency_key_in_use"},
                    status_code=409,
                    headers={"Retry-After": "1"},
                )
        try:
            answer = await _place(wiring, order, key)
        except BaseException:
            if key is not None:
                # No order: a retry with the same key must be served afresh.
                await _to_the_end(wiring.release(key))
            raise
        if isinstance(answer, JSONResponse) and key is not None:
            await _to_the_end(wiring.release(key))
        return answer

    @app.get(
        "/products/{product_id}",
        response_model=ProductOut,
        response_model_exclude_none=True,
        responses={
            200: {"description": "The product; degraded: a stale copy (with Age)"},
            404: _error("No such product (not_found)"),
            **_UNAVAILABLE,
        },
    )
    async def get_product(
        product_id: Annotated[str, Path(examples=["sku-001"])],
    ) -> dict[str, Any]:
        product, degraded = await wiring.product(product_id)
        if product is None:
            raise LookupError("no such product")
        body = dict(product)
        body["degraded"] = degraded is not None
        if degraded is not None:
            body["notice"] = STALE_NOTICE
            body["age_seconds"] = round(degraded.age or 0.0, 1)
        return body

    @app.get(
        "/recommendations",
        response_model=RecommendationsOut,
        responses={
            200: {"description": "Recommendations; degraded: the popular products"},
            422: _error("user_id is missing or too long (invalid_request)"),
            **_UNAVAILABLE,
        },
    )
    async def recommendations(
        user_id: Annotated[str, Query(min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        items, degraded = await wiring.recommend(user_id)
        return {"user_id": user_id, "items": items, "degraded": degraded is not None}


async def _place(wiring: Any, order: OrderIn, key: str | None) -> dict[str, Any] | JSONResponse:
    """Place one order: price it, reserve and charge, store it, hand on its events."""
    order_id = uuid.uuid4().hex
    skus = sorted({i.sku for i in order.items})
    prices = await wiring.prices(skus)
    unknown = [s for s in skus if s not in prices]
    if unknown:
        return JSONResponse({"error": "unknown_products", "skus": unknown}, status_code=422)
    items = [i.model_dump() for i in order.items]
    total = sum(prices[i.sku] * i.qty for i in order.items)
    reservation, charge = await gather_or_compensate(wiring, order_id, items, total)
    record = {
        "id": order_id,
        "user_id": order.user_id,
        "items": items,
        "total_cents": total,
        "charge_id": charge,
        "reservation_id": reservation,
    }
    answer = {
        "order_id": order_id,
        "total_cents": total,
        "charge_id": charge,
        "status": "confirmed",
    }
    try:
        await wiring.save_order(record, key, answer)
    except BaseException:
        await wiring.compensate(order_id, "refund", "release")
        raise
    event = {"order_id": order_id, "user_id": order.user_id, "total_cents": total}
    await wiring.notify(event)
    await wiring.track(event)
    return answer


class _HealthProxy:
    """health_routes() wants a Health now; the wiring builds it at startup."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app.state.health, name)


def _admin_routes(app: FastAPI, wiring: Any, workers: Workers, own: Capacity) -> None:  # noqa: C901 - one small handler per endpoint
    # One route for both methods: a 405 on this path then lists both in Allow
    # (two routes would each answer for their own, "Allow: PUT").
    @app.api_route(
        "/_admin/faults/{target}",
        methods=["PUT", "DELETE"],
        responses={
            404: _error("No such fault target (unknown_target)"),
            422: _error("Not a fault (bad_fault)"),
        },
    )
    async def fault(target: str, request: Request) -> JSONResponse:
        """PUT: set the fault of a database call (``db_read``, ``db_write``); DELETE: clear it."""
        if request.method == "DELETE":
            for name, chaos in wiring.db_faults.items():
                if target in (name, "all"):
                    chaos.clear()
            return JSONResponse({"cleared": target})
        chaos = wiring.db_faults.get(target)
        if chaos is None:
            return JSONResponse(
                {"error": "unknown_target", "targets": sorted(wiring.db_faults)}, status_code=404
            )
        try:
            body = json.loads(await request.body())
        except ValueError:  # not JSON, or not UTF-8
            body = None
        if not isinstance(body, dict):
            detail = "a fault is a JSON object"
            return JSONResponse({"error": "bad_fault", "detail": detail}, status_code=422)
        try:
            current = chaos.set(Fault.from_mapping(body))
        except ConfigError as exc:
            return JSONResponse({"error": "bad_fault", "detail": str(exc)[:200]}, status_code=422)
        return JSONResponse({"fault": current.to_mapping()})

    @app.post("/_admin/reset")
    async def reset() -> dict[str, Any]:
        wiring.reset()
        flushed = workers.reset(own)
        return {"reset": True, "flushed": flushed}

    @app.get("/_admin/capacity")
    async def get_capacity() -> dict[str, Any]:
        return {"capacity": workers.capacity.to_mapping()}

    @app.put("/_admin/capacity")
    async def set_capacity(changes: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        try:
            workers.configure(workers.capacity.changed(changes))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": "bad_capacity", "detail": str(exc)}, status_code=422)
        return JSONResponse({"capacity": workers.capacity.to_mapping()})

    @app.get("/_admin/load")
    async def load() -> dict[str, Any]:
        """The service's own work per second, as a simulator's GET /_control reports it."""
        return {"load": workers.figures()}

    @app.get("/_admin/state")
    async def state() -> dict[str, Any]:
        orders = await db.count_orders(wiring.engine)
        return dict(wiring.state()) | {"orders": orders}
