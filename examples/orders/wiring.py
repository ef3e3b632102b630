"""How the service reaches its dependencies: with seawall, or naively.

The route handlers (app.py) only call a :class:`Wiring`. Two exist, so that the
scenario runner can put the same service under the same faults twice:

* :class:`SeawallWiring` -- the policies of ``policies.toml``: each downstream
  its own breaker, bulkhead, timeout and retry budget; payment retried with one
  idempotency key per order; notifications and analytics through durable
  outboxes; products served stale from the cache when the database fails;
  generic recommendations when the personalised ones fail.
* :class:`NaiveWiring` -- the anti-pattern made concrete: plain httpx, a 10 s
  timeout, 5 immediate retries, no breaker, one shared pool, no fallback,
  notifications sent inline.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

import seawall
from seawall import Check, Dependency, Fallback, Health, MemoryStaleStore, Outbox, Registry
from seawall.chaos import Chaos
from seawall.events import Listeners
from seawall.fallback import Degraded
from seawall.integrations._headers import DEADLINE_HEADER, format_deadline
from seawall.integrations.checks import CheckFn, redis_check, sqlalchemy_check
from seawall.integrations.httpx import resilient_client

from . import db
from .policies import Policies, ServiceBudgets
from .settings import Settings

#: Shown when personalised recommendations are unavailable: the generic best sellers.
POPULAR = ("sku-001", "sku-002", "sku-003", "sku-005", "sku-008")

OUTBOXES = {
    # outbox name -> (downstream, path)
    "notification": ("notification", "/notifications"),
    "analytics": ("analytics", "/events"),
}
COMPENSATIONS = {"refund": ("payment", "/refunds"), "release": ("inventory", "/releases")}

# What SeawallWiring.close() gives each step of a graceful shutdown, in seconds;
# deploy/k8s/orders.yaml's grace period adds up CLOSE_SECONDS with the rest.
UNDO_GRACE = 1.0  # compensations still being written to their outbox (a disk write)
OUTBOX_FLUSH = 2.0  # delivering what can be delivered now; the rest stays on disk
OUTBOX_STOP = 2.0  # a delivery in progress, before it is cancelled (and kept)
HEALTH_GRACE = 1.0  # readiness checks in flight
#: The longest SeawallWiring.close() takes: every outbox flushes and stops at
#: the same time as the others, and the health checks wind down meanwhile.
CLOSE_SECONDS = UNDO_GRACE + max(OUTBOX_FLUSH + OUTBOX_STOP, HEALTH_GRACE)


class Wiring(Protocol):
    """What the route handlers need from the outside world."""

    health: Health
    engine: AsyncEngine
    db_faults: dict[str, Chaos]

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def prices(self, ids: list[str]) -> dict[str, int]: ...
    async def reserve(self, order_id: str, items: list[dict[str, Any]]) -> str: ...
    async def charge(self, order_id: str, cents: int) -> str: ...
    async def compensate(self, order_id: str, *kinds: str) -> None: ...
    async def save_order(
        self, order: dict[str, Any], key: str | None = None, answer: dict[str, Any] | None = None
    ) -> None: ...
    async def claim(self, key: str, fingerprint: str) -> db.Claim: ...
    async def release(self, key: str) -> None: ...
    async def notify(self, event: dict[str, Any]) -> None: ...
    async def track(self, event: dict[str, Any]) -> None: ...
    async def product(self, product_id: str) -> tuple[dict[str, Any] | None, Degraded | None]: ...
    async def recommend(self, user_id: str) -> tuple[list[str], Degraded | None]: ...
    def state(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...


def _faults() -> dict[str, Chaos]:
    # In-process knobs on the database calls: how the scenario runner makes
    # SQLite reads fail (on PostgreSQL the tests SIGSTOP the real server).
    return {"db_read": Chaos(), "db_write": Chaos()}


def _timeout(dependency: Dependency) -> float:
    timeout = dependency.config.timeout
    if timeout is None:
        msg = f"policies.toml gives {dependency.name!r} no timeout"
        raise RuntimeError(msg)
    return timeout


def _http_timeout(dependency: Dependency) -> httpx.Timeout:
    # httpx's own default (5 s for each phase) would cut an 8 s call short, so
    # every phase gets the dependency's timeout; the resilient transport then
    # clips each to what is left of the deadline, attempt by attempt.
    return httpx.Timeout(_timeout(dependency))


async def _close_outbox(outbox: Outbox) -> None:
    await outbox.flush_async(timeout=OUTBOX_FLUSH)
    await outbox.stop_async(timeout=OUTBOX_STOP)
    outbox.close()


@dataclass
class SeawallWiring:
    """The reference wiring: every dependency through its policies."""

    settings: Settings
    listeners: Listeners
    db_faults: dict[str, Chaos] = field(default_factory=_faults)
    #: Compensations being written to their outbox (see compensate()).
    _undoing: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    async def start(self) -> None:
        s = self.settings
        policies = Policies.load(s.policies)
        budgets = policies.service
        self.redis = None
        if s.redis_url:
            import redis.asyncio  # noqa: PLC0415 - only with REDIS_URL

            from seawall.integrations.redis import AsyncRedisStaleStore  # noqa: PLC0415

            self.redis = redis.asyncio.Redis.from_url(
                s.redis_url,
                socket_timeout=budgets.cache_timeout,
                socket_connect_timeout=budgets.cache_timeout,
            )
            # The stale store bounds its own lookups far tighter (its default):
            # it is the fallback of a read that has already failed.
            self.cache: Any = AsyncRedisStaleStore(self.redis, namespace="orders", ttl=3600)
        else:
            self.cache = MemoryStaleStore(max_entries=10_000)
        config = policies.registry
        max_stale = config["dependencies"]["db_read"]["fallback"]["max_stale"]
        s.data_dir.mkdir(parents=True, exist_ok=True)
        # Each delivery is given its dependency's timeout (see _deliverer).
        self.deliveries = httpx.AsyncClient()
        self.outboxes = {
            name: Outbox(
                s.data_dir / f"{name}.db",
                deliver=self._deliverer(name),
                synchronous="normal",
                backoff_initial=0.2,
                backoff_maximum=5.0,
                poll_interval=0.5,
                name=name,
                listeners=self.listeners,
            )
            for name in (*OUTBOXES, "compensations")
        }
        self.registry = Registry.from_mapping(
            config,
            fallbacks={
                "recommendations": Fallback.value(list(POPULAR)),
                # Only products are worth keeping: a "not found" for an id a
                # client made up, stored, would evict (from the memory cache) or
                # crowd (in Redis) the products a failing database needs.
                "db_read": Fallback.stale(
                    max_stale,
                    store=self.cache,
                    key=lambda pid: f"product:{pid}",
                    remember=lambda product: product is not None,
                ),
            },
            outboxes=self.outboxes,
            listeners=self.listeners,
        )
        deps = self.registry
        # The database enforces the same budgets as the dependencies that wait on it.
        self.timeouts = db.Timeouts(
            read=_timeout(deps["db_read"]), write=_timeout(deps["db_write"])
        )
        self.price_timeouts = replace(self.timeouts, read=_timeout(deps["db_prices"]))
        self.engine = db.make_engine(s.database_url, self.timeouts)
        await db.setup(self.engine)
        self.clients = {
            "payment": resilient_client(
                deps["payment"],
                base_url=s.url("payment"),
                idempotency_keys=True,
                timeouts=_http_timeout(deps["payment"]),
                transport=_Witness(httpx.AsyncHTTPTransport()),
            ),
            "inventory": resilient_client(
                deps["inventory"],
                base_url=s.url("inventory"),
                idempotency_keys=True,
                timeouts=_http_timeout(deps["inventory"]),
                transport=_Witness(httpx.AsyncHTTPTransport()),
            ),
            # Recommendations answer through Dependency.call_result around a plain
            # client (below): its fallback is a list of items, not an HTTP response.
            "recommendations": httpx.AsyncClient(
                base_url=s.url("recommendations"), timeout=_http_timeout(deps["recommendations"])
            ),
        }
        for outbox in self.outboxes.values():
            await outbox.start_async()
        self.store = None
        if s.share_state and s.redis_url:
            from seawall.integrations.redis import AsyncRedisBreakerStore  # noqa: PLC0415

            # Every replica's breakers learn from the fleet: one replica seeing
            # payment fail opens the circuit everywhere within a sync interval,
            # and only one replica at a time sends the half-open probes.
            self.store = AsyncRedisBreakerStore(
                s.redis_url, namespace="orders", sync_interval=0.25, listeners=self.listeners
            )
            for dep in self.registry:
                if dep.breaker is not None:
                    self.store.share(dep.breaker)
            await self.store.start()
        readiness = budgets.readiness
        database = _through(self.db_faults["db_read"], sqlalchemy_check(self.engine))
        checks = [Check("database", database, timeout=readiness["database"])]
        if self.redis is not None:
            checks.append(Check("cache", redis_check(self.redis), timeout=readiness["cache"]))
        # Readiness checks what is this instance's own to fix: a payment outage
        # (an open payment breaker) is the same at every replica, and taking
        # them all out of rotation would also stop the pages that still work.
        self.health = Health(checks, cache_ttl=budgets.readiness_ttl)
        self.key_budgets = _key_budgets(budgets)

    async def close(self) -> None:
        """Deliver what can be delivered quickly; keep the rest on disk for the next start.

        Takes CLOSE_SECONDS at most (and the moments closing clients takes).
        """
        if self.store is not None:
            await self.store.stop()
        if self._undoing:
            await asyncio.wait(self._undoing, timeout=UNDO_GRACE)
        # At once, not in turn: in turn, the outboxes' waits would add up (3 x 4 s),
        # and a pod's grace period would have to cover the sum.
        await asyncio.gather(
            *(_close_outbox(outbox) for outbox in self.outboxes.values()),
            self.health.aclose(grace=HEALTH_GRACE),
        )
        for client in self.clients.values():
            await client.aclose()
        await self.deliveries.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()

    def _deliverer(self, name: str) -> Any:
        async def deliver(entry: seawall.OutboxEntry) -> None:
            # Each outbox delivers for the dependency of its name (built after
            # the outboxes, so looked up here).
            timeout = _http_timeout(self.registry[name])
            if name == "compensations":
                downstream, path = COMPENSATIONS[entry.topic]
            else:
                downstream, path = OUTBOXES[name]
            body = {"event_id": entry.id, "topic": entry.topic, **entry.payload}
            response = await self.deliveries.post(
                self.settings.url(downstream) + path, json=body, timeout=timeout
            )
            response.raise_for_status()

        return deliver

    # -- the calls ----------------------------------------------------------

    async def prices(self, ids: list[str]) -> dict[str, int]:
        return await self.registry["db_prices"].call(
            self.db_faults["db_read"].call_async,
            db.read_prices,
            self.engine,
            ids,
            self.price_timeouts,
        )

    async def reserve(self, order_id: str, items: list[dict[str, Any]]) -> str:
        r = await self.clients["inventory"].post(
            "/reservations", json={"order_id": order_id, "items": items}
        )
        r.raise_for_status()
        return str(r.json()["reservation_id"])

    async def charge(self, order_id: str, cents: int) -> str:
        r = await self.clients["payment"].post(
            "/charges", json={"order_id": order_id, "amount_cents": cents}
        )
        r.raise_for_status()
        return str(r.json()["charge_id"])

    async def compensate(self, order_id: str, *kinds: str) -> None:
        """Write what undoes half an order to the compensations outbox, even if cancelled.

        The request asking is failing, often because the deadline middleware is
        cancelling it, and a second cancellation (the server shutting down) may
        come while it waits. So the write runs in a task of its own, awaited
        through a shield: a cancellation ends the waiting, never the write.
        (Awaited directly, put_async's commit would be handed to a worker
        thread, and a job still queued is dropped when its awaiter is
        cancelled.) Once written, the outbox delivers it -- across restarts,
        with backoff -- until payment and inventory accept it; close() waits
        for writes still running. A synchronous put would hold the event loop
        through a commit, and calling payment from the failing request could
        take the 8 s of a payment service that may be the very problem.
        """
        if not kinds:
            return
        task = asyncio.create_task(self._write_compensations(order_id, kinds))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)
        await asyncio.shield(task)

    async def _write_compensations(self, order_id: str, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            await self.registry["compensations"].send_async(kind, {"order_id": order_id})

    async def save_order(
        self, order: dict[str, Any], key: str | None = None, answer: dict[str, Any] | None = None
    ) -> None:
        await self.registry["db_write"].call(
            self.db_faults["db_write"].call_async,
            db.save_order,
            self.engine,
            order,
            self.timeouts,
            key,
            answer,
        )

    async def claim(self, key: str, fingerprint: str) -> db.Claim:
        return await self.registry["db_write"].call(
            self.db_faults["db_write"].call_async,
            db.claim_key,
            *_claim_args(self, key, fingerprint),
        )

    async def release(self, key: str) -> None:
        await self.registry["db_write"].call(
            self.db_faults["db_write"].call_async, db.release_key, self.engine, key, self.timeouts
        )

    async def notify(self, event: dict[str, Any]) -> None:
        await self.registry["notification"].send_async("order-confirmed", event)

    async def track(self, event: dict[str, Any]) -> None:
        await self.registry["analytics"].send_async("order-placed", event)

    async def product(self, product_id: str) -> tuple[dict[str, Any] | None, Degraded | None]:
        result = await self.registry["db_read"].call_result(self._read_product, product_id)
        return result.value, result.degraded

    async def _read_product(self, product_id: str) -> dict[str, Any] | None:
        return await self.db_faults["db_read"].call_async(
            db.read_product, self.engine, product_id, self.timeouts
        )

    async def recommend(self, user_id: str) -> tuple[list[str], Degraded | None]:
        result = await self.registry["recommendations"].call_result(self._recommend, user_id)
        return list(result.value), result.degraded

    async def _recommend(self, user_id: str) -> list[str]:
        left = seawall.remaining()
        headers = {} if left is None else {DEADLINE_HEADER: format_deadline(left)}
        r = await self.clients["recommendations"].get(
            "/recommendations", params={"user_id": user_id}, headers=headers
        )
        r.raise_for_status()
        return list(r.json()["items"])

    # -- for the scenario runner and tests -----------------------------------

    def state(self) -> dict[str, Any]:
        deps = {}
        for dep in self.registry:
            entry: dict[str, Any] = {"criticality": dep.criticality.value}
            if dep.breaker is not None:
                entry["breaker"] = dep.breaker.state.value
            if dep.bulkhead is not None:
                entry["bulkhead_in_use"] = dep.bulkhead.in_use
            if dep.limit is not None:
                entry["limit"] = dep.limit.limit
            if dep.throttle is not None:
                entry["throttle_probability"] = round(dep.throttle.probability, 3)
            if dep.outbox is not None:
                entry["outbox_depth"] = dep.outbox.depth
            deps[dep.name] = entry
        return {"mode": "seawall", "dependencies": deps}

    def reset(self) -> None:
        for dep in self.registry:
            if dep.breaker is not None:
                dep.breaker.reset()
            if dep.throttle is not None:
                dep.throttle.reset()


@dataclass
class NaiveWiring:
    """The anti-pattern: what a first version of this service usually does."""

    settings: Settings
    listeners: Listeners
    db_faults: dict[str, Chaos] = field(default_factory=_faults)
    attempts: int = 6  # the first try and 5 immediate retries

    async def start(self) -> None:
        # Naive about its downstreams, not about its database: the same
        # statement timeouts and readiness as the seawall wiring.
        policies = Policies.load(self.settings.policies)
        self.timeouts = db.Timeouts(
            read=policies.timeout("db_read"), write=policies.timeout("db_write")
        )
        self.engine = db.make_engine(self.settings.database_url, self.timeouts)
        await db.setup(self.engine)
        # One shared pool for every downstream, a 10 s timeout on everything.
        self.client = httpx.AsyncClient(timeout=10.0)
        budgets = policies.service
        database = _through(self.db_faults["db_read"], sqlalchemy_check(self.engine))
        check = Check("database", database, timeout=budgets.readiness["database"])
        self.health = Health([check], cache_ttl=budgets.readiness_ttl)
        self.key_budgets = _key_budgets(budgets)

    async def close(self) -> None:
        await self.client.aclose()
        await self.health.aclose(grace=1.0)
        await self.engine.dispose()

    async def _request(self, method: str, downstream: str, path: str, **kw: Any) -> httpx.Response:
        url = self.settings.url(downstream) + path
        for attempt in range(self.attempts):
            try:
                r = await self.client.request(method, url, **kw)
                r.raise_for_status()
            except (httpx.HTTPError, OSError):
                if attempt == self.attempts - 1:
                    raise
                continue  # at once: no backoff, no jitter, no budget
            return r
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def prices(self, ids: list[str]) -> dict[str, int]:
        return await self.db_faults["db_read"].call_async(
            db.read_prices, self.engine, ids, self.timeouts
        )

    async def reserve(self, order_id: str, items: list[dict[str, Any]]) -> str:
        r = await self._request(
            "POST", "inventory", "/reservations", json={"order_id": order_id, "items": items}
        )
        return str(r.json()["reservation_id"])

    async def charge(self, order_id: str, cents: int) -> str:
        # Retried without an idempotency key: a lost response means a second charge.
        r = await self._request(
            "POST", "payment", "/charges", json={"order_id": order_id, "amount_cents": cents}
        )
        return str(r.json()["charge_id"])

    async def compensate(self, order_id: str, *kinds: str) -> None:
        for kind in kinds:
            downstream, path = COMPENSATIONS[kind]
            await self._request("POST", downstream, path, json={"order_id": order_id})

    async def save_order(
        self, order: dict[str, Any], key: str | None = None, answer: dict[str, Any] | None = None
    ) -> None:
        await self.db_faults["db_write"].call_async(
            db.save_order, self.engine, order, self.timeouts, key, answer
        )

    async def claim(self, key: str, fingerprint: str) -> db.Claim:
        return await self.db_faults["db_write"].call_async(
            db.claim_key, *_claim_args(self, key, fingerprint)
        )

    async def release(self, key: str) -> None:
        await self.db_faults["db_write"].call_async(db.release_key, self.engine, key, self.timeouts)

    async def notify(self, event: dict[str, Any]) -> None:
        # Inline: the customer waits for the notification service.
        await self._request(
            "POST", "notification", "/notifications", json={"event_id": uuid.uuid4().hex, **event}
        )

    async def track(self, event: dict[str, Any]) -> None:
        await self._request(
            "POST", "analytics", "/events", json={"event_id": uuid.uuid4().hex, **event}
        )

    async def product(self, product_id: str) -> tuple[dict[str, Any] | None, Degraded | None]:
        return await self.db_faults["db_read"].call_async(
            db.read_product, self.engine, product_id, self.timeouts
        ), None

    async def recommend(self, user_id: str) -> tuple[list[str], Degraded | None]:
        r = await self._request(
            "GET", "recommendations", "/recommendations", params={"user_id": user_id}
        )
        return list(r.json()["items"]), None

    def state(self) -> dict[str, Any]:
        return {"mode": "naive", "dependencies": {}}

    def reset(self) -> None:
        return None


def make_wiring(settings: Settings, listeners: Listeners) -> SeawallWiring | NaiveWiring:
    """Return the wiring the settings ask for."""
    if settings.mode == "naive":
        return NaiveWiring(settings, listeners)
    return SeawallWiring(settings, listeners)


#: The paths this order's requests actually went out on (set per order, shared by
#: the reserve and charge tasks, which inherit the context).
_SENT: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("orders.sent", default=None)


class _Witness(httpx.AsyncBaseTransport):
    """The innermost transport: notes each request that really leaves the service.

    It sits under the resilient transport, so a call refused by the breaker or
    the bulkhead never reaches it: what it notes may have happened downstream.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = _SENT.get()
        if sent is not None:
            sent.add(request.url.path)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def may_have_happened(outcome: object, sent: bool) -> bool:
    """Whether a reservation or charge may have been made downstream, so must be undone.

    Undone: what succeeded, and what failed after any attempt went out (a lost
    response, a timeout). Not undone: what never left the service (an open
    breaker, a full bulkhead at every attempt). Undoing what never happened
    would be harmless, but a burst of needless refunds would storm a payment
    service just as it recovers.
    """
    return not isinstance(outcome, BaseException) or sent


async def gather_or_compensate(
    wiring: Wiring, order_id: str, items: list[dict[str, Any]], cents: int
) -> tuple[str, str]:
    """Reserve and charge at once; if either fails, undo the other (never half an order).

    Undoing is by order id, because a charge whose response was lost may have
    happened without the service knowing as what; the compensations are
    idempotent downstream. A request cancelled midway (DeadlineMiddleware
    cancels one whose deadline passes) undoes what may have happened too, then
    ends cancelled; the naive wiring does not.
    """
    sent: set[str] = set()
    token = _SENT.set(sent)
    try:
        # Tasks, not bare coroutines: their outcomes can still be read when
        # the request is cancelled while it waits for them.
        reserve = asyncio.create_task(wiring.reserve(order_id, items))
        charge = asyncio.create_task(wiring.charge(order_id, cents))
    finally:
        _SENT.reset(token)
    # The naive wiring does not witness its requests: everything is undone.
    witnessed = isinstance(wiring, SeawallWiring)
    parts = (("release", reserve, "/reservations"), ("refund", charge, "/charges"))
    try:
        await asyncio.gather(reserve, charge, return_exceptions=True)
    except asyncio.CancelledError:
        # gather has cancelled both and waited for them: each ended with its
        # result, its error, or cancelled, maybe after its request went out.
        if witnessed:
            await wiring.compensate(order_id, *_to_undo(parts, sent))
        raise
    reservation, charged = _outcome(reserve), _outcome(charge)
    if isinstance(reservation, BaseException) or isinstance(charged, BaseException):
        await wiring.compensate(order_id, *_to_undo(parts, sent if witnessed else None))
        raise reservation if isinstance(reservation, BaseException) else charged  # type: ignore[misc]
    return str(reservation), str(charged)


def _outcome(task: asyncio.Task[str]) -> object:
    """A finished task's result, or its error (a CancelledError if it was cancelled)."""
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or task.result()


def _to_undo(
    parts: tuple[tuple[str, asyncio.Task[str], str], ...], sent: set[str] | None
) -> list[str]:
    """The compensations of the parts that may have happened (``sent=None``: not witnessed)."""
    return [
        kind
        for kind, task, path in parts
        if may_have_happened(_outcome(task), sent is None or path in sent)
    ]


def _claim_args(wiring: Any, key: str, fingerprint: str) -> tuple[Any, ...]:
    """db.claim_key's arguments after the engine's, for either wiring: now, by the wall clock."""
    retention, abandoned = wiring.key_budgets
    return (wiring.engine, key, fingerprint, time.time(), retention, abandoned, wiring.timeouts)


def _key_budgets(budgets: ServiceBudgets) -> tuple[float, float]:
    """An idempotency key's retention, and when a claim still pending was abandoned.

    No request runs longer than its deadline (and the second that undoes a
    half-made order): a claim pending for twice that belongs to a process that
    died between claiming and answering.
    """
    return budgets.idempotency_retention, 2 * (budgets.request_deadline + 1)


def _through(chaos: Chaos, check: CheckFn) -> CheckFn:
    """The readiness check of the database, through the database's own fault knob.

    The knob stands for a failing database: a real one would fail the
    readiness check as well as the reads, so the check sees what they see.
    """

    async def once() -> bool:
        return await check()

    async def checked() -> bool:
        return await chaos.call_async(once)

    return checked
