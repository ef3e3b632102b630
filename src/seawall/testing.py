"""Helpers for testing code that uses seawall, without waiting for real time.

* :class:`FakeClock` stands in for the real clock: time moves only when a test
  advances it or when code under test sleeps on it (a sleep jumps the clock
  forward instead of waiting).
* :class:`RecordingListener` keeps every event it receives, for assertions.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Self, TypeVar

from seawall.events import Event, Listeners

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["FakeClock", "RecordingListener"]

E = TypeVar("E", bound=Event)


class FakeClock:
    """A clock that moves only when told to.

    ``sleep(s)`` and ``await async_sleep(s)`` advance the clock by ``s`` at once
    and record ``s`` in :attr:`sleeps`; the async sleep also yields to the event
    loop once, so other tasks run as they would during a real sleep.

    Args:
        start: The initial reading of :meth:`monotonic`, in seconds.
    """

    __slots__ = ("_lock", "_now", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = float(start)
        #: Every duration slept on this clock, in order.
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the current fake time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            msg = f"a clock never goes backwards: advance({seconds!r})"
            raise ValueError(msg)
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record ``seconds`` and advance the clock by it, without waiting."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    async def async_sleep(self, seconds: float) -> None:
        """Record ``seconds``, advance the clock by it, and yield to the loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


class RecordingListener:
    """A listener that keeps every event it receives, in order.

    Use it on a policy's own :class:`~seawall.events.Listeners`, or as a context
    manager on a shared one, which removes it again on exit::

        with RecordingListener(seawall.events.LISTENERS) as rec:
            ...
        assert rec.of_type(StateChanged)
    """

    __slots__ = ("_lock", "_remove", "_target", "events")

    def __init__(self, listeners: Listeners | None = None) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []
        self._target = listeners
        self._remove: list[object] = []

    def __call__(self, event: Event, /) -> None:
        """Keep ``event``."""
        with self._lock:
            self.events.append(event)

    def of_type(self, event_type: type[E]) -> list[E]:
        """Return the recorded events that are instances of ``event_type``."""
        with self._lock:
            return [e for e in self.events if isinstance(e, event_type)]

    def clear(self) -> None:
        """Forget every recorded event."""
        with self._lock:
            self.events.clear()

    def __enter__(self) -> Self:
        if self._target is None:
            msg = "RecordingListener needs a Listeners to be used as a context manager"
            raise TypeError(msg)
        self._remove.append(self._target.add(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        remove = self._remove.pop()
        remove()  # type: ignore[operator]
