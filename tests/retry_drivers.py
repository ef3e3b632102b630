"""Run one logical call through a Retry by any of its six entry points.

Every retry rule about exceptions is tested through each driver, so the sync
and async paths (which share the decisions but not their glue) cannot drift.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from seawall.retry import Retry

DRIVERS = ["decorator", "call", "loop", "async decorator", "call_async", "async loop"]


class Driver:
    """Call ``body`` (a plain function) through a Retry with one entry point."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.is_async = kind.startswith("async") or kind == "call_async"

    def __call__(self, retry: Retry, body: Callable[[], Any]) -> Any:
        if not self.is_async:
            return self._sync(retry, body)
        return asyncio.run(self._async(retry, body))

    def _sync(self, retry: Retry, body: Callable[[], Any]) -> Any:
        if self.kind == "decorator":
            return retry(body)()
        if self.kind == "call":
            return retry.call(body)
        for attempt in retry:
            with attempt:
                return body()
        raise AssertionError("the attempt loop ended without a result")

    async def _async(self, retry: Retry, body: Callable[[], Any]) -> Any:
        async def abody() -> Any:
            await asyncio.sleep(0)
            return body()

        if self.kind == "async decorator":
            return await retry(abody)()
        if self.kind == "call_async":
            return await retry.call_async(abody)
        async for attempt in retry:
            async with attempt:
                return await abody()
        raise AssertionError("the attempt loop ended without a result")
