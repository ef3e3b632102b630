"""Storage: products, orders and idempotency keys, on SQLAlchemy (SQLite by default, or PostgreSQL).

Timeouts are enforced by the database too, not only by abandoning the awaiting
task: an abandoned query would keep running and holding its locks. Each
transaction sets its class's budget (:class:`Timeouts`, read from the policies'
``db_read``/``db_prices`` and ``db_write`` timeouts): PostgreSQL's
``statement_timeout``; on SQLite, whose queries here are quick point lookups,
the busy timeout, which bounds the wait for a lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

T = TypeVar("T")

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now()),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(100), nullable=False),
    Column("items", JSON, nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("charge_id", String(64), nullable=False),
    Column("reservation_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

# One row per Idempotency-Key a client sent: what its request was (a digest of
# the validated body), and once it is answered, the answer. ``status`` is NULL
# while the first request with the key is still being served.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=True),
    Column("answer", JSON, nullable=True),
    Column("created_at", Float, nullable=False),  # Unix time: compared, never shown
)

CATALOGUE = [
    {"id": f"sku-{n:03d}", "name": f"Product {n}", "price_cents": 499 + 100 * (n % 17)}
    for n in range(1, 41)
]


@dataclass(frozen=True)
class Timeouts:
    """Database-side budgets per class of statement, in seconds (from policies.toml)."""

    read: float
    write: float


def make_engine(url: str, timeouts: Timeouts) -> AsyncEngine:
    """Build the async engine with timeouts that bound a hung server too."""
    if url.startswith("sqlite"):
        # Every transaction below sets its own class's busy timeout; this one is
        # for the statements outside them (setup() writes, hence the write budget).
        return create_async_engine(url, connect_args={"timeout": timeouts.write})
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_timeout=2.0,  # waiting for a pooled connection is part of the budget
        pool_pre_ping=True,  # a connection that died while idle is replaced, not used
        connect_args={"connect_timeout": 2},
    )


async def setup(engine: AsyncEngine) -> None:
    """Create the tables and the catalogue if missing (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        count = (await conn.execute(select(func.count()).select_from(products))).scalar_one()
        if count == 0:
            await conn.execute(insert(products), CATALOGUE)


async def _bound(conn: AsyncConnection, seconds: float) -> None:
    ms = int(seconds * 1000)
    if conn.dialect.name == "postgresql":
        # set_config(..., true) is SET LOCAL: it ends with the transaction, so a
        # pooled connection never carries one class's timeout into another's.
        await conn.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(ms)}
        )
    elif conn.dialect.name == "sqlite":
        # A connection setting, not a transaction's: it outlives this one, so
        # every transaction sets its own. (PRAGMA takes no bound parameters.)
        await conn.execute(text(f"PRAGMA busy_timeout = {ms}"))


#: Reads given up on, still cleaning up: held here, as the loop holds tasks weakly.
_ABANDONED: set[asyncio.Task[Any]] = set()


async def _abandonable(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` in a task of its own, and stop waiting the moment the caller gives up.

    A read cancelled while PostgreSQL hangs (a frozen server, a lost network)
    does not end when cancelled: psycopg asks the server to cancel the query
    and waits for it, 5 s and 5 s more, before it closes the connection. A
    5 s read timeout then took 15 s, and two attempts outlived the request's
    25 s deadline, where the stale cache should have answered at 10 s. Here
    the read is cancelled as before, but nobody waits for its cleanup. Reads
    only: a write's caller must know how it ended.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        _ABANDONED.add(task)
        task.add_done_callback(_cleaned_up)
        raise


def _cleaned_up(task: asyncio.Task[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # read, or asyncio logs it as never retrieved


async def read_product(
    engine: AsyncEngine, product_id: str, timeouts: Timeouts
) -> dict[str, Any] | None:
    """Return one product, or ``None``; bounded by the read timeout in the database."""
    return await _abandonable(_read_product(engine, product_id, timeouts))


async def _read_product(
    engine: AsyncEngine, product_id: str, timeouts: Timeouts
) -> dict[str, Any] | None:
    async with engine.begin() as conn:
        await _bound(conn, timeouts.read)
        row = (await conn.execute(select(products).where(products.c.id == product_id))).first()
    if row is None:
        return None
    return {"id": row.id, "name": row.name, "price_cents": row.price_cents}


async def read_prices(engine: AsyncEngine, ids: list[str], timeouts: Timeouts) -> dict[str, int]:
    """Return the prices of the given products that exist."""
    return await _abandonable(_read_prices(engine, ids, timeouts))


async def _read_prices(engine: AsyncEngine, ids: list[str], timeouts: Timeouts) -> dict[str, int]:
    async with engine.begin() as conn:
        await _bound(conn, timeouts.read)
        rows = await conn.execute(
            select(products.c.id, products.c.price_cents).where(products.c.id.in_(ids))
        )
        return {r.id: r.price_cents for r in rows}


async def save_order(
    engine: AsyncEngine,
    order: dict[str, Any],
    timeouts: Timeouts,
    key: str | None = None,
    answer: dict[str, Any] | None = None,
) -> None:
    """Store an order in one transaction, bounded by the write timeout in the database.

    With an idempotency ``key``, its row records ``answer`` in the same
    transaction: the order is stored if and only if the key's answer is, so a
    client repeating the request gets this answer, never a second order.
    """
    async with engine.begin() as conn:
        await _bound(conn, timeouts.write)
        await conn.execute(insert(orders), [order])
        if key is not None:
            await conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == key)
                .values(status=201, answer=answer)
            )


@dataclass(frozen=True)
class Claim:
    """What an Idempotency-Key's row says about a request carrying it.

    ``new``: this request is the first (or the key's earlier use expired, or
    was abandoned): serve it. ``replay``: answered before; ``status`` and
    ``answer`` are that answer. ``mismatch``: the key came with another body.
    ``pending``: the first request with it is still being served.
    """

    kind: Literal["new", "replay", "mismatch", "pending"]
    status: int | None = None
    answer: dict[str, Any] | None = None


async def claim_key(  # noqa: PLR0917 - one statement's inputs
    engine: AsyncEngine,
    key: str,
    fingerprint: str,
    now: float,
    retention: float,
    abandoned_after: float,
    timeouts: Timeouts,
) -> Claim:
    """Claim ``key`` for a request whose body digest is ``fingerprint``, or say why not.

    A row older than ``retention`` seconds is forgotten (the key may be used
    again); one still pending after ``abandoned_after`` seconds belonged to a
    request that can no longer be running (a crash between claim and answer),
    and is taken over. Two requests claiming the same new key at once: the
    database's primary key lets one insert, and the other sees it pending.
    """
    for _ in range(2):  # a second look after losing an insert race
        try:
            async with engine.begin() as conn:
                await _bound(conn, timeouts.write)
                table = idempotency_keys
                row = (await conn.execute(select(table).where(table.c.key == key))).first()
                if row is not None:
                    expired = row.created_at < now - retention
                    abandoned = row.status is None and row.created_at < now - abandoned_after
                    if not (expired or abandoned):
                        if row.fingerprint != fingerprint:
                            return Claim("mismatch")
                        if row.status is None:
                            return Claim("pending")
                        return Claim("replay", row.status, row.answer)
                    await conn.execute(delete(table).where(table.c.key == key))
                await conn.execute(
                    insert(table), [{"key": key, "fingerprint": fingerprint, "created_at": now}]
                )
                return Claim("new")
        except IntegrityError:
            continue  # another request inserted it first (rolled back): look again
    return Claim("pending")


async def release_key(engine: AsyncEngine, key: str, timeouts: Timeouts) -> None:
    """Forget a claimed key whose request ended without an order, so a retry may use it."""
    async with engine.begin() as conn:
        await _bound(conn, timeouts.write)
        await conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.key == key, idempotency_keys.c.status.is_(None)
            )
        )


async def count_orders(engine: AsyncEngine) -> int:
    """How many orders are stored (for tests and the scenario runner)."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(orders))).scalar_one())
