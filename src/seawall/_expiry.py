"""One loop timer for many timeouts of the same length: what a Dependency's attempts use.

:class:`asyncio.Timeout` schedules a timer handle per scope (an object and a
heap push on entry, a cancellation left in the heap on exit) and runs two
coroutine frames. That is most of what a protected call costs when nothing is
wrong. A dependency's attempts all get the same timeout, so their deadlines
arrive in the order the attempts start: a queue in start order, with one loop
timer set for its oldest unfinished entry, expires them all. An attempt adds a
small list to the queue and marks it finished on exit; the timer fires about
once per timeout length, not once per call.

Expiry works as :class:`asyncio.Timeout` does: the task is cancelled, and the
scope's owner turns the resulting :class:`asyncio.CancelledError` into a
timeout only when no other cancellation is pending (``Task.uncancel``), so a
cancellation from outside stays a cancellation.

Deadlines that come out of order are kept correctly (in a heap beside the
queue), but the queue is what makes it cheap: callers use an Expiry for their
own fixed timeout, not for an ambient deadline that is sooner.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["DONE", "FIRED", "PENDING", "Expiry"]

# An entry is a list: [when, task, state, cancelling-at-start]. A list rather
# than an object: built on every call, and it is the cheapest mutable record.
WHEN, TASK, STATE, CANCELLING = 0, 1, 2, 3
PENDING, FIRED, DONE = 0, 1, 2


class Expiry:
    """Deadlines on one event loop, expired by one timer.

    Deadlines that arrive in order go to a queue (the common case: one fixed
    timeout per dependency). One that is earlier than the last queued (its
    attempt waited for a bulkhead permit after its deadline was set) goes to a
    small heap instead, so no deadline ever waits behind a later one.
    """

    __slots__ = ("_entries", "_handle", "_handle_when", "_seq", "_stragglers", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: The loop whose tasks this serves; an Expiry is never shared across loops.
        self.loop = loop
        self._entries: deque[list[Any]] = deque()
        self._stragglers: list[tuple[float, int, list[Any]]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = math.inf

    def start(self, when: float, task: asyncio.Task[Any]) -> list[Any]:
        """Cancel ``task`` at ``when`` unless :meth:`finish` comes first.

        Returns the entry to pass to :meth:`finish`; its ``STATE`` is ``FIRED``
        once the task was cancelled for it.
        """
        entry = [when, task, PENDING, task.cancelling()]
        entries = self._entries
        if not entries or entries[-1][WHEN] <= when:
            entries.append(entry)
        else:
            heapq.heappush(self._stragglers, (when, next(self._seq), entry))
        if when < self._handle_when:
            self._schedule(when)
        return entry

    def finish(self, entry: list[Any]) -> None:
        """Mark ``entry`` finished, and drop finished entries from the queue's head."""
        entry[STATE] = DONE
        # An entry can wait behind a longer call still running; it must not
        # keep its finished task (its result, its traceback) alive meanwhile.
        entry[TASK] = None
        entries = self._entries
        # Calls mostly end in the order they started, so this pops one entry;
        # an entry still running at the head holds the rest until it ends or
        # expires (bounded by calls per second times the timeout).
        while entries and entries[0][STATE] == DONE:
            entries.popleft()

    def _schedule(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self.loop.call_at(when, self._fire)
        self._handle_when = when

    def _fire(self) -> None:
        self._handle = None
        self._handle_when = math.inf
        now = self.loop.time()
        entries = self._entries
        while entries:
            entry = entries[0]
            if entry[STATE] == PENDING:
                if entry[WHEN] > now:
                    break
                entry[STATE] = FIRED
                entry[TASK].cancel()
            entries.popleft()
        stragglers = self._stragglers
        while stragglers:
            when, _, entry = stragglers[0]
            if entry[STATE] == PENDING:
                if when > now:
                    break
                entry[STATE] = FIRED
                entry[TASK].cancel()
            heapq.heappop(stragglers)
        soonest = entries[0][WHEN] if entries else math.inf
        if stragglers and stragglers[0][0] < soonest:
            soonest = stragglers[0][0]
        if soonest < math.inf:
            self._schedule(soonest)

    def __len__(self) -> int:
        """Entries held: running ones, and finished ones behind a running one."""
        return len(self._entries) + len(self._stragglers)
