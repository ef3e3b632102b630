"""Time, injected: every policy reads the clock through this protocol.

Policies never call :func:`time.monotonic` or :func:`asyncio.sleep` directly, so
tests can swap in :class:`seawall.testing.FakeClock` and never wait for real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["MONOTONIC", "Clock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time and a way to wait on it.

    ``monotonic()`` returns seconds from an arbitrary origin that never goes
    backwards; ``sleep()`` and ``async_sleep()`` wait for a number of seconds by
    that same clock.
    """

    def monotonic(self) -> float:
        """Return the current time in seconds (monotonic, arbitrary origin)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def async_sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep`, :func:`asyncio.sleep`."""

    __slots__ = ()

    # Bound as plain attributes (not methods) so a policy's hot path pays one
    # attribute lookup and a C call, not a Python frame.
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def async_sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` on the running event loop."""
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "MonotonicClock()"


#: The process-wide real clock, used by every policy built without ``clock=``.
MONOTONIC = MonotonicClock()
