"""Retry budgets: retries allowed as a share of calls, shared by every caller.

A per-call attempt limit does not stop a retry storm: when a dependency fails
for everyone, three attempts per call triple its load exactly when it can least
take it. A budget caps retries *across* calls (Finagle's ``RetryBudget``, gRPC's
retry throttling): every call deposits ``ratio`` of a token, every retry
withdraws a whole one, and a floor of ``min_per_second`` tokens per second keeps
a low-traffic client able to retry at all. Over any stretch of time::

    retries <= ratio * calls + min_per_second * seconds + capacity

where ``capacity`` is the most the bucket holds (the burst allowed after a
quiet spell). An empty budget means "do not retry": the caller gets the
original error at once.

:class:`Budget` is the small protocol a retry policy needs, so a fleet-wide
budget (for instance in Redis) can stand in for the in-process
:class:`RetryBudget`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from seawall import _validate
from seawall._clock import MONOTONIC

if TYPE_CHECKING:
    from seawall._clock import Clock

__all__ = [
    "DEFAULT_MIN_PER_SECOND",
    "DEFAULT_RATIO",
    "DEFAULT_RESERVE_SECONDS",
    "Budget",
    "RetryBudget",
]

DEFAULT_RATIO = 0.1
DEFAULT_MIN_PER_SECOND = 10.0
#: The default capacity is this many seconds of ``min_per_second`` (Finagle's TTL).
DEFAULT_RESERVE_SECONDS = 10.0

# Float sums of ratios (0.1 * 3 + 0.7 ...) land a hair below a whole token.
_EPSILON = 1e-9


@runtime_checkable
class Budget(Protocol):
    """What a retry policy asks of a retry budget.

    Both methods are called from many threads and tasks at once and must be
    cheap and non-blocking; :meth:`deposit` is on every call's path.
    """

    def deposit(self) -> None:
        """Record one call (adds the budget's ``ratio`` of a token)."""
        ...

    def try_withdraw(self) -> bool:
        """Take one token for a retry; return ``False`` (taking nothing) when there is none."""
        ...


class RetryBudget:
    """A token bucket shared by every call that uses it; thread-safe.

    Args:
        ratio: Tokens each call deposits, in [0, 1]: the share of calls that
            may be retried once. Default 0.1 (10 % extra load at most).
        min_per_second: Tokens added per second whatever the traffic, so a
            client with few calls can still retry. Default 10.
        capacity: The most tokens the bucket holds, and what it starts with:
            the retries allowed in a burst after a quiet spell. Default: 10
            seconds of ``min_per_second``, and at least one token.
        clock: Time source for the per-second floor; defaults to the real clock.

    Raises:
        ConfigError: ``ratio`` is outside [0, 1], ``min_per_second`` is negative,
            or ``capacity`` is below 1; the message names each one.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "__weakref__",
        "_balance",
        "_calls",
        "_last",
        "_lock",
        "_mark",
        "_now",
        "capacity",
        "min_per_second",
        "ratio",
    )

    def __init__(
        self,
        ratio: float = DEFAULT_RATIO,
        min_per_second: float = DEFAULT_MIN_PER_SECOND,
        *,
        capacity: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        errors = [
            *_validate.in_range("ratio", ratio, 0, 1),
            *_validate.duration("min_per_second", min_per_second),
        ]
        if capacity is None and not errors:
            capacity = max(1.0, min_per_second * DEFAULT_RESERVE_SECONDS)
        elif capacity is not None:
            cap: object = capacity
            if not _validate.is_number(cap) or not 1 <= cap < float("inf"):  # type: ignore[operator]
                errors.append(f"capacity must be a finite number >= 1, got {capacity!r}")
        _validate.fail_if(errors)
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.capacity = float(capacity)  # type: ignore[arg-type]
        self._now = (MONOTONIC if clock is None else clock).monotonic
        self._lock = threading.Lock()
        self._balance = self.capacity
        self._last = self._now()
        # Deposits are counted, not added: next() on an itertools.count is one C
        # call, atomic under the GIL, with no lock and no clock read. The count
        # is folded into the balance when a retry asks for a token. That is
        # exact, not an approximation: between two withdrawals the balance only
        # grows, so capping once at the end equals capping after every deposit.
        self._calls = itertools.count()
        self._mark = 0

    def deposit(self) -> None:
        """Record one call: ``ratio`` of a token (folded in lazily; never blocks)."""
        next(self._calls)

    def try_withdraw(self) -> bool:
        """Take one token for a retry; return ``False`` (taking nothing) when there is none."""
        with self._lock:
            balance = self._refill_locked()
            if balance >= 1.0 - _EPSILON:
                self._balance = max(0.0, balance - 1.0)
                return True
            return False

    @property
    def balance(self) -> float:
        """Tokens available now (one is needed per retry)."""
        with self._lock:
            return self._refill_locked()

    def _refill_locked(self) -> float:
        # Our own next() consumes a number too: the value it returns counts every
        # deposit since the last fold plus the fold's own reading then.
        seen = next(self._calls)
        deposits = seen - self._mark
        self._mark = seen + 1
        now = self._now()
        elapsed = max(0.0, now - self._last)
        self._last = now
        balance = self._balance + deposits * self.ratio + elapsed * self.min_per_second
        balance = min(self.capacity, balance)
        self._balance = balance
        return balance

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"capacity={self.capacity!r})"
        )
