"""Sliding windows of call outcomes, at a per-call cost independent of their size.

A window answers "of the recent calls, how many failed and how many were slow?"
Two kinds, configured by small frozen objects and built into mutable state:

* :class:`CountWindow` -- the last ``size`` calls. Each call takes a position
  from an atomic counter; only failed and slow calls are remembered, by
  position, so recording a success is one C call and takes no lock.
* :class:`TimeWindow` -- the calls of the last ``seconds``, aggregated in
  ``buckets`` time slices. Recording touches one slice; moving forward clears
  at most ``buckets`` slices however long the window is, so a one-hour window
  costs per call what a ten-second one does.

Outcomes are small integer codes: bit 0 marks a failure, bit 1 a slow call.
Window state is not thread-safe by itself (but for ``next(CountRing.seq)``):
its owner holds a lock around :meth:`~WindowState.record`.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from seawall import _validate

__all__ = [
    "FAILURE",
    "MAX_BUCKETS",
    "MAX_WINDOW_SIZE",
    "SLOW",
    "SUCCESS",
    "CountRing",
    "CountWindow",
    "Counts",
    "TimeBuckets",
    "TimeWindow",
    "WindowState",
]

MAX_WINDOW_SIZE = 1_000_000
"""The most calls a :class:`CountWindow` holds: a window that long never forgets a
failure in practice, and a larger one is a typing slip rather than a design."""
MAX_BUCKETS = 10_000
"""The most slices of a :class:`TimeWindow`: each slice is memory held from the start."""

SUCCESS = 0
"""Outcome code of a call that succeeded in time."""
FAILURE = 1
"""Outcome bit of a failed call."""
SLOW = 2
"""Outcome bit of a slow call (it may also have failed: ``FAILURE | SLOW``)."""

Counts = tuple[int, int, int]
"""``(calls, failures, slow)`` in a window."""


class WindowState(Protocol):
    """The mutable state of a window."""

    needs_time: bool
    """Whether :meth:`record` and :meth:`counts` need the clock's reading."""

    def record(self, outcome: int, now: float) -> Counts:
        """Add one call's outcome code and return the window's counts after it."""
        ...

    def counts(self, now: float) -> Counts:
        """Return the window's counts at ``now`` without adding a call."""
        ...

    def reset(self) -> None:
        """Forget every recorded call."""
        ...

    def totals(self) -> Counts:
        """Return ``(calls, failures, slow)`` recorded since the window was built.

        Never reset: a shared store reads it periodically and sends the
        differences, so the hot path does no extra work for sharing.
        """
        ...


@dataclass(frozen=True, slots=True)
class CountWindow:
    """A window over the last ``size`` calls.

    Args:
        size: How many of the most recent calls to keep (1 to :data:`MAX_WINDOW_SIZE`).
    """

    size: int

    def __post_init__(self) -> None:
        _validate.fail_if(_validate.integer_in("window.size", self.size, 1, MAX_WINDOW_SIZE))

    def build(self) -> CountRing:
        """Return fresh, empty state for this window."""
        return CountRing(self.size)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A window over the calls of the last ``seconds``.

    Calls are counted in ``buckets`` slices of ``seconds / buckets`` each; the
    window moves forward a whole slice at a time, so it covers between
    ``seconds - seconds / buckets`` and ``seconds`` of history.

    Args:
        seconds: The window's length (> 0).
        buckets: How many slices it is counted in (1 to :data:`MAX_BUCKETS`).
            More slices: a smoother window and a little more memory; the
            per-call cost is the same.
    """

    seconds: float
    buckets: int = 10

    def __post_init__(self) -> None:
        _validate.fail_if(
            [
                *_validate.duration("window.seconds", self.seconds, allow_zero=False),
                *_validate.integer_in("window.buckets", self.buckets, 1, MAX_BUCKETS),
            ]
        )

    def build(self) -> TimeBuckets:
        """Return fresh, empty state for this window."""
        return TimeBuckets(float(self.seconds), self.buckets)


class CountRing:
    """State of a :class:`CountWindow`.

    Every call takes the next position of :attr:`seq`, an
    :func:`itertools.count`; the window is the last ``size`` positions.
    A success only takes a position (``next(seq)``: atomic, lock-free); a failed
    or slow call also notes its position in a deque. The failures in the window
    are the deque's entries newer than ``size`` positions ago.
    """

    __slots__ = ("_failed_at", "_failed_total", "_size", "_slow_at", "_slow_total", "seq", "start")

    needs_time = False

    def __init__(self, size: int) -> None:
        self._size = size
        #: The position counter: ``next(seq)`` records one fast success.
        self.seq = itertools.count()
        #: The first position of the current history (it moves on reset).
        self.start = 0
        self._failed_at: deque[int] = deque()
        self._slow_at: deque[int] = deque()
        self._failed_total = 0
        self._slow_total = 0

    def _position(self) -> int:
        # The counter's next value, read without taking it ("count(N)"). Only
        # snapshots and resets read it; the hot path never does.
        return int(repr(self.seq)[6:-1])

    def _counts_at(self, last: int) -> Counts:
        oldest = last - self._size
        failed, slow = self._failed_at, self._slow_at
        while failed and failed[0] <= oldest:
            failed.popleft()
        while slow and slow[0] <= oldest:
            slow.popleft()
        return min(last + 1 - self.start, self._size), len(failed), len(slow)

    def record(self, outcome: int, now: float) -> Counts:  # noqa: ARG002 - time-free window
        """Add one outcome; return ``(calls, failures, slow)`` after it."""
        position = next(self.seq)
        if outcome & FAILURE:
            self._failed_at.append(position)
            self._failed_total += 1
        if outcome & SLOW:
            self._slow_at.append(position)
            self._slow_total += 1
        return self._counts_at(position)

    def counts(self, now: float) -> Counts:  # noqa: ARG002 - time-free window
        """Return ``(calls, failures, slow)`` without adding a call."""
        return self._counts_at(self._position() - 1)

    def reset(self) -> None:
        """Forget every recorded call."""
        self.start = self._position()
        self._failed_at.clear()
        self._slow_at.clear()

    def totals(self) -> Counts:
        """Return ``(calls, failures, slow)`` since the window was built (never reset)."""
        return self._position(), self._failed_total, self._slow_total


class TimeBuckets:
    """State of a :class:`TimeWindow`: per-slice counts and running totals."""

    __slots__ = (
        "_bcalls",
        "_bfail",
        "_bslow",
        "_calls",
        "_epoch",
        "_fail",
        "_n",
        "_slow",
        "_totals",
        "_width",
    )

    needs_time = True

    def __init__(self, seconds: float, buckets: int) -> None:
        self._n = buckets
        self._width = seconds / buckets
        self._bcalls = [0] * buckets
        self._bfail = [0] * buckets
        self._bslow = [0] * buckets
        self._epoch = -(2**62)  # index of the newest slice; "never" to begin with
        self._calls = self._fail = self._slow = 0
        self._totals = [0, 0, 0]

    def record(self, outcome: int, now: float) -> Counts:
        """Add one outcome to the slice ``now`` falls in; return the counts after it."""
        epoch = int(now // self._width)
        if epoch != self._epoch:
            self._advance(epoch)
        b = self._epoch % self._n
        self._bcalls[b] += 1
        self._calls += 1
        totals = self._totals
        totals[0] += 1
        if outcome & FAILURE:
            self._bfail[b] += 1
            self._fail += 1
            totals[1] += 1
        if outcome & SLOW:
            self._bslow[b] += 1
            self._slow += 1
            totals[2] += 1
        return self._calls, self._fail, self._slow

    def counts(self, now: float) -> Counts:
        """Return the counts of the window that ends at ``now``."""
        epoch = int(now // self._width)
        if epoch != self._epoch:
            self._advance(epoch)
        return self._calls, self._fail, self._slow

    def _advance(self, epoch: int) -> None:
        last = self._epoch
        if epoch < last:
            # A clock that went backwards (a real monotonic one cannot): keep
            # counting into the newest slice rather than corrupt the totals.
            return
        if epoch - last >= self._n:
            self.reset()
        else:
            # At most `buckets` slices to clear, whatever the window's length.
            for e in range(last + 1, epoch + 1):
                b = e % self._n
                self._calls -= self._bcalls[b]
                self._fail -= self._bfail[b]
                self._slow -= self._bslow[b]
                self._bcalls[b] = self._bfail[b] = self._bslow[b] = 0
        self._epoch = epoch

    def reset(self) -> None:
        """Forget every recorded call."""
        n = self._n
        self._bcalls = [0] * n
        self._bfail = [0] * n
        self._bslow = [0] * n
        self._calls = self._fail = self._slow = 0

    def totals(self) -> Counts:
        """Return ``(calls, failures, slow)`` since the window was built (never reset)."""
        calls, failures, slow = self._totals
        return calls, failures, slow
