"""How long a request has spent waiting on its dependencies.

A service's latency is its own work plus what its dependencies make it wait.
Load shedding protects the service's *own* capacity (its event loop, its
workers, its pools): a slow payment provider is its dependency's problem,
which that dependency's own limit and breaker handle. Shedding on total
latency would refuse product pages because payment is slow.

So every :class:`~seawall.Dependency` call made while a :class:`Waits` is
current (:func:`waiting`, which
:class:`~seawall.integrations.shedding.LoadShedMiddleware` opens for each
request) adds its time to it. Overlapping calls (``asyncio.gather``) count
once: the clock runs while at least one call is in progress.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Waits", "current_waits", "waiting"]

_monotonic = time.monotonic


class Waits:
    """The time one request has spent in dependency calls, on the monotonic clock.

    Not locked: the calls of one request run on one event loop, or in threads
    that each add a whole call; at worst two threads ending at once lose a
    few microseconds of it.
    """

    __slots__ = ("_depth", "_since", "_total")

    def __init__(self) -> None:
        self._depth = 0
        self._since = 0.0
        self._total = 0.0

    def enter(self, now: float) -> None:
        """Count a dependency call that began at ``now``."""
        if self._depth == 0:
            self._since = now
        self._depth += 1

    def leave(self, now: float) -> None:
        """Count the end, at ``now``, of a dependency call."""
        self._depth -= 1
        if self._depth == 0:
            self._total += now - self._since

    def waited(self, now: float | None = None) -> float:
        """Return the seconds spent in dependency calls so far (those in progress included)."""
        if self._depth <= 0:
            return self._total
        return self._total + ((_monotonic() if now is None else now) - self._since)


_CURRENT: contextvars.ContextVar[Waits | None] = contextvars.ContextVar(
    "seawall_waits", default=None
)


def current_waits() -> Waits | None:
    """Return the :class:`Waits` of the current request, if one is being measured."""
    return _CURRENT.get()


@contextlib.contextmanager
def waiting() -> Iterator[Waits]:
    """Measure the dependency waits of the code inside (a request)."""
    waits = Waits()
    token = _CURRENT.set(waits)
    try:
        yield waits
    finally:
        _CURRENT.reset(token)
