"""The order API: thin route handlers over a Wiring (see wiring.py).

* ``POST /orders`` reserves inventory and charges payment at once, stores the
  order in one transaction, then hands the confirmation and the analytics
  event to durable outboxes. A failure of a critical step is a 503 with
  ``Retry-After``, never half an order: what was done is undone.
* ``GET /products/{id}`` reads the database; when it fails, the last good value
  comes from the cache, marked degraded ("prices may be slightly out of date").
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

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from seawall import AdaptiveLimit, Criticality
from seawall.chaos import Fault
from seawall.core.limit import SampleWindowConfig
from seawall.errors import ConfigError
from seawall.events import Listeners
from seawall.integrations import prometheus
from seawall.integrations.asgi import DeadlineMiddleware, health_routes, install_exception_handlers
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

    user_id: str = Field(min_length=1, max_length=100)
    items: list[Item] = Field(min_length=1, max_length=50)


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
    # deadline, then the service's own work, then the routes.
    app.add_middleware(WorkStage, workers=workers)
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

    _routes(app, wiring)
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


def _routes(app: FastAPI, wiring: Any) -> None:
    @app.exception_handler(LookupError)
    async def not_found(request: Any, exc: LookupError) -> JSONResponse:
        return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)

    @app.post("/orders", status_code=201)
    async def create_order(order: OrderIn) -> dict[str, Any]:
        order_id = uuid.uuid4().hex
        skus = sorted({i.sku for i in order.items})
        prices = await wiring.prices(skus)
        unknown = [s for s in skus if s not in prices]
        if unknown:
            return JSONResponse(  # type: ignore[return-value]
                {"error": "unknown_products", "skus": unknown}, status_code=422
            )
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
        try:
            await wiring.save_order(record)
        except BaseException:
            await wiring.compensate(order_id, "refund", "release")
            raise
        event = {"order_id": order_id, "user_id": order.user_id, "total_cents": total}
        await wiring.notify(event)
        await wiring.track(event)
        return {
            "order_id": order_id,
            "total_cents": total,
            "charge_id": charge,
            "status": "confirmed",
        }

    @app.get("/products/{product_id}")
    async def get_product(product_id: str) -> dict[str, Any]:
        product, degraded = await wiring.product(product_id)
        if product is None:
            raise LookupError(f"no product {product_id!r}")
        body = dict(product)
        body["degraded"] = degraded is not None
        if degraded is not None:
            body["notice"] = STALE_NOTICE
            body["age_seconds"] = round(degraded.age or 0.0, 1)
        return body

    @app.get("/recommendations")
    async def recommendations(
        user_id: Annotated[str, Query(min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        items, degraded = await wiring.recommend(user_id)
        return {"user_id": user_id, "items": items, "degraded": degraded is not None}


class _HealthProxy:
    """health_routes() wants a Health now; the wiring builds it at startup."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app.state.health, name)


def _admin_routes(app: FastAPI, wiring: Any, workers: Workers, own: Capacity) -> None:  # noqa: C901 - one small handler per endpoint
    @app.put("/_admin/faults/{target}")
    async def set_fault(target: str, fault: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        chaos = wiring.db_faults.get(target)
        if chaos is None:
            return JSONResponse(
                {"error": "unknown_target", "targets": sorted(wiring.db_faults)}, status_code=404
            )
        try:
            current = chaos.set(Fault.from_mapping(fault))
        except ConfigError as exc:
            return JSONResponse({"error": "bad_fault", "detail": str(exc)}, status_code=422)
        return JSONResponse({"fault": current.to_mapping()})

    @app.delete("/_admin/faults/{target}")
    async def clear_fault(target: str) -> dict[str, Any]:
        for name, chaos in wiring.db_faults.items():
            if target in (name, "all"):
                chaos.clear()
        return {"cleared": target}

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
        return wiring.state() | {"orders": await db.count_orders(wiring.engine)}
