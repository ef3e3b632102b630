"""A small service with real policies, and drivers that make each of them decide.

Every exporter test builds its service here: payment (CRITICAL: retry with a
budget, breaker, thread bulkhead, timeout), recommendations (DEGRADABLE, a
value fallback), notifications (BACKGROUND, a SQLite outbox), all on one fake
clock and one private Listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CountWindow,
    Criticality,
    Dependency,
    Fallback,
    Listeners,
    Outbox,
    OutboxEntry,
    Retry,
    RetryBudget,
    State,
    ThreadBulkhead,
)
from seawall.testing import FakeClock


class Down(ConnectionError):
    """The downstream refused the connection (a transient, retryable failure)."""


def fail(*_: object) -> object:
    raise Down("connection refused")


def ok(*_: object) -> str:
    return "ok"


@dataclass
class Service:
    clock: FakeClock
    listeners: Listeners
    payment: Dependency
    recommendations: Dependency
    notifications: Dependency
    budget: RetryBudget
    outbox: Outbox

    @property
    def dependencies(self) -> dict[str, Dependency]:
        """Quacks like seawall.registry.Registry."""
        return {d.name: d for d in (self.payment, self.recommendations, self.notifications)}

    def close(self) -> None:
        self.outbox.close()


def breaker(name: str, clock: FakeClock, listeners: Listeners, **kw: Any) -> CircuitBreaker:
    options: dict[str, Any] = {"window": CountWindow(4), "minimum_calls": 4, "open_duration": 30.0}
    options.update(kw)
    return CircuitBreaker(name, clock=clock, listeners=listeners, **options)


def build(tmp_path: Path, *, budget_capacity: float = 100.0) -> Service:
    clock = FakeClock()
    listeners = Listeners()
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, capacity=budget_capacity, clock=clock)
    payment = Dependency(
        "payment",
        retry=Retry(
            attempts=2,
            backoff=Backoff.constant(0.1),
            budget=budget,
            clock=clock,
            listeners=listeners,
        ),
        breaker=breaker("payment", clock, listeners),
        bulkhead=ThreadBulkhead("payment", max_concurrent=1, listeners=listeners),
        timeout=2.0,
        clock=clock,
        listeners=listeners,
    )
    recommendations = Dependency(
        "recommendations",
        criticality=Criticality.DEGRADABLE,
        fallback=Fallback.value(()),
        breaker=breaker("recommendations", clock, listeners),
        clock=clock,
        listeners=listeners,
    )
    outbox = Outbox(
        tmp_path / "notifications.db",
        deliver=deliver,
        max_entries=2,
        max_attempts=2,
        name="notifications",
        clock=clock,
        listeners=listeners,
    )
    notifications = Dependency(
        "notifications",
        criticality=Criticality.BACKGROUND,
        outbox=outbox,
        clock=clock,
        listeners=listeners,
    )
    return Service(clock, listeners, payment, recommendations, notifications, budget, outbox)


def deliver(entry: OutboxEntry) -> None:
    if entry.payload.get("bad"):
        raise Down("receiver down")


def call(dep: Dependency, fn: Any = fail) -> Any:
    """Call ``dep`` synchronously; return its answer or the exception it raised."""
    try:
        return dep.call_sync(fn)
    except Exception as exc:
        return exc


def open_circuit(dep: Dependency) -> int:
    """Fail calls through ``dep`` until its breaker opens; return how many calls it took."""
    assert dep.breaker is not None
    n = 0
    while dep.breaker.state is not State.OPEN:
        call(dep)
        n += 1
        assert n < 100
    return n


def saturate_bulkhead(dep: Dependency) -> Any:
    """Hold the only permit of ``dep``'s thread bulkhead and call: the call is refused."""
    bulkhead = dep.bulkhead
    assert isinstance(bulkhead, ThreadBulkhead)
    bulkhead.acquire()
    try:
        return call(dep, ok)
    finally:
        bulkhead.release()


def time_out(listeners: Listeners, name: str = "search") -> Any:
    """Make an async dependency time out (10 ms of real time); return the error."""
    dep = Dependency(name, timeout=0.01, listeners=listeners)

    async def hang() -> None:
        await asyncio.sleep(5)

    async def main() -> Any:
        try:
            return await dep.call(hang)
        except Exception as exc:
            return exc

    return asyncio.run(main())


def async_bulkhead_queue(listeners: Listeners) -> Bulkhead:
    """Return an asyncio bulkhead (for tracking) after one refusal on it."""
    bulkhead = Bulkhead("search", max_concurrent=1, listeners=listeners)

    async def main() -> None:
        await bulkhead.acquire()
        with contextlib.suppress(Exception):
            await bulkhead.acquire()
        bulkhead.release()

    asyncio.run(main())
    return bulkhead


def drive_everything(service: Service) -> None:
    """Make every policy of ``service`` take every kind of decision at least once."""
    call(service.payment, ok)
    open_circuit(service.payment)
    call(service.payment)  # rejected by the open circuit
    service.clock.advance(31)  # OPEN -> HALF_OPEN on the next look
    call(service.payment, ok)  # a probe that succeeds
    call(service.payment, ok)  # and another: CLOSED
    saturate_bulkhead(service.payment)
    open_circuit(service.recommendations)  # answered by the fallback all along
    call(service.recommendations)
    time_out(service.listeners)
    service.notifications.send("mail", {"bad": True})
    service.notifications.send("mail", {"to": "a@example.com"})
    service.notifications.send("mail", {"to": "b@example.com"})  # full: dropped
    service.outbox.deliver_due()  # the bad entry fails first
    service.clock.advance(120)
    service.outbox.deliver_due()  # fails again: dead-lettered; the good one delivered
