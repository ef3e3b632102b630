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

A :class:`Waits` can also hold a *lender*: an object with ``lend()`` and
``reclaim()`` (an :class:`~seawall.AdaptiveLimit`). While the request waits on
a dependency, its permit is lent back, so that the limit counts the requests
doing the service's own work, the ones its latency is learnt from; the
request takes it back, unconditionally, when the wait ends.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Lender", "Waits", "current_waits", "waiting"]

_monotonic = time.monotonic


class Waits:
    """The time one request has spent in dependency calls, on the monotonic clock.

    Not locked: the calls of one request run on one event loop, or in threads
    that each add a whole call; at worst two threads ending at once lose a
    few microseconds of it.
    """

    __slots__ = ("_depth", "_lender", "_since", "_total")

    def __init__(self, lender: Lender | None = None) -> None:
        self._depth = 0
        self._since = 0.0
        self._total = 0.0
        self._lender = lender

    def enter(self, now: float) -> None:
        """Count a dependency call that began at ``now``."""
        if self._depth == 0:
            self._since = now
            if self._lender is not None:
                self._lender.lend()
        self._depth += 1

    def leave(self, now: float) -> None:
        """Count the end, at ``now``, of a dependency call."""
        self._depth -= 1
        if self._depth == 0:
            self._total += now - self._since
            if self._lender is not None:
                self._lender.reclaim()

    def close(self) -> bool:
        """End the request: later calls (of tasks it left running) lend nothing.

        Returns:
            Whether its permit was lent out at that moment (a dependency call
            of a task it started is still in progress).
        """
        lent = self._lender is not None and self._depth > 0
        self._lender = None
        return lent

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


class Lender(Protocol):
    """What lends a request's permit back while it waits on a dependency."""

    def lend(self) -> None:
        """Give the permit back for the time of a wait."""
        ...

    def reclaim(self) -> None:
        """Take it again, whatever the limit now."""
        ...


@contextlib.contextmanager
def waiting(lender: Lender | None = None) -> Iterator[Waits]:
    """Measure the dependency waits of the code inside (a request)."""
    waits = Waits(lender)
    token = _CURRENT.set(waits)
    try:
        yield waits
    finally:
        _CURRENT.reset(token)
