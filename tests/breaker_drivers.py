"""Run one call through a breaker by any of its six entry points.

Every rule of the breaker is tested through each driver, so the sync and async
paths (which share the state machine but not their few lines of glue) cannot
drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from seawall import CircuitBreaker, CircuitOpenError
from seawall.testing import FakeClock

DRIVERS = ["with", "call", "decorator", "async with", "call_async", "async decorator"]

Outcome = Literal["ok", "failed", "rejected"]


class Driver:
    """Make calls through a breaker with one entry point; bodies may take fake time."""

    def __init__(self, kind: str, clock: FakeClock) -> None:
        self.kind = kind
        self.clock = clock
        self.loop = asyncio.new_event_loop() if "async" in kind else None
        self.ran = 0  # how many bodies actually ran

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()

    def __call__(
        self,
        breaker: CircuitBreaker,
        *,
        raises: BaseException | None = None,
        takes: float = 0.0,
        during: Callable[[], object] | None = None,
    ) -> Outcome:
        """Make one call; ``during`` runs inside it, while the call is in flight."""

        def body() -> str:
            self.ran += 1
            self.clock.advance(takes)
            if during is not None:
                during()  # sync calls only: an async driver's loop is running
            if raises is not None:
                raise raises
            return "value"

        async def abody() -> str:
            return body()

        try:
            if self.kind == "with":
                with breaker:
                    body()
            elif self.kind == "call":
                assert breaker.call(body) == "value"
            elif self.kind == "decorator":
                assert breaker(body)() == "value"
            else:
                assert self.loop is not None
                self.loop.run_until_complete(self._async(breaker, abody))
        except CircuitOpenError:
            return "rejected"
        except BaseException as exc:
            if exc is raises:
                return "failed"
            raise
        return "ok"

    async def _async(self, breaker: CircuitBreaker, abody: object) -> None:
        if self.kind == "async with":
            async with breaker:
                await abody()  # type: ignore[operator]
        elif self.kind == "call_async":
            assert await breaker.call_async(abody) == "value"  # type: ignore[arg-type]
        else:
            assert await breaker(abody)() == "value"  # type: ignore[operator]
