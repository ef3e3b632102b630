"""Which failed halves of an order are undone: what may have happened downstream."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from examples.orders import db
from examples.orders.app import create_app
from examples.orders.serve import graceful_shutdown_timeout
from examples.orders.settings import DOWNSTREAMS, Settings
from examples.orders.wiring import _SENT, _Witness, make_wiring, may_have_happened
from sqlalchemy import text

from seawall import CircuitOpenError, DependencyUnavailable
from seawall.events import Listeners
from seawall.integrations.asgi import DeadlineMiddleware


def test_success_is_undone_failure_only_if_a_request_went_out() -> None:
    refused = DependencyUnavailable(
        name="payment", cause=CircuitOpenError(name="payment", retry_after=3)
    )
    assert may_have_happened("charge-id", sent=False)
    assert not may_have_happened(refused, sent=False)
    assert may_have_happened(refused, sent=True)  # an earlier attempt may have committed


def test_the_witness_notes_only_requests_that_reach_it() -> None:
    async def main() -> set[str]:
        seen: set[str] = set()
        token = _SENT.set(seen)
        inner = httpx.MockTransport(lambda request: httpx.Response(201))
        async with httpx.AsyncClient(
            transport=_Witness(inner), base_url="http://payment"
        ) as client:
            await client.post("/charges")
        _SENT.reset(token)
        return seen

    assert asyncio.run(main()) == {"/charges"}


def _custom_policies(tmp_path: Path) -> Path:
    """A copy of the service's policies.toml in which every budget the service applies is changed."""
    text = Settings().policies.read_text()
    for old, new in (
        ("request_deadline = 25.0", "request_deadline = 24.0"),
        (
            "readiness = { database = 1.0, cache = 0.5, ttl = 1.0 }",
            "readiness = { database = 0.8, cache = 0.4, ttl = 0.7 }",
        ),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    for dependency, seconds in (("db_read", 4.0), ("db_prices", 4.5), ("db_write", 9.0)):
        head = f"[dependencies.{dependency}]"
        before, after = text.split(head)
        table, bracket, rest = after.partition("\n[")
        table = re.sub(
            r"^timeout = .*$", f"timeout = {seconds}", table, count=1, flags=re.MULTILINE
        )
        text = before + head + table + bracket + rest
    path = tmp_path / "policies.toml"
    path.write_text(text)
    return path


def test_the_request_deadline_is_the_policies_one(tmp_path: Path) -> None:
    app = create_app(Settings(policies=_custom_policies(tmp_path), data_dir=tmp_path))
    (deadline,) = [m for m in app.user_middleware if m.cls is cast("Any", DeadlineMiddleware)]
    assert deadline.kwargs["default"] == 24.0
    assert graceful_shutdown_timeout(24.0) == 25  # in-flight requests get their whole deadline


@pytest.mark.parametrize("mode", ["seawall", "naive"])
def test_database_and_readiness_budgets_are_the_policies_ones(tmp_path: Path, mode: str) -> None:
    """The database enforces each class's timeout (SQLite: its busy timeout, per transaction)."""
    settings = Settings(
        mode=mode,  # type: ignore[arg-type]
        database_url=f"sqlite+aiosqlite:///{tmp_path}/orders.db",
        urls=dict.fromkeys(DOWNSTREAMS, "http://127.0.0.1:9"),  # never called here
        data_dir=tmp_path,
        policies=_custom_policies(tmp_path),
    )

    order = {"id": "o-1", "user_id": "u-1", "items": [], "total_cents": 1}
    order |= {"charge_id": "c-1", "reservation_id": "r-1"}

    async def main() -> tuple[db.Timeouts, list[int], dict[str, float], float]:
        wiring = make_wiring(settings, Listeners())
        await wiring.start()

        async def busy_timeout_after(call: Awaitable[object]) -> int:
            await call
            async with wiring.engine.connect() as conn:  # the same pooled connection
                return int((await conn.execute(text("PRAGMA busy_timeout"))).scalar_one())

        try:
            busy = [
                await busy_timeout_after(wiring.product("sku-001")),
                await busy_timeout_after(wiring.prices(["sku-001"])),
                await busy_timeout_after(wiring.save_order(order)),
            ]
            checks = {c.name: c.timeout for c in wiring.health.checks}
            return wiring.timeouts, busy, checks, wiring.health._ttl
        finally:
            await wiring.close()

    timeouts, busy, checks, ttl = asyncio.run(main())
    assert timeouts == db.Timeouts(read=4.0, write=9.0)
    # Products, prices (naive reads them as products), orders: each its class's budget.
    assert busy == [4000, 4500 if mode == "seawall" else 4000, 9000]
    assert checks == {"database": 0.8}
    assert ttl == 0.7
