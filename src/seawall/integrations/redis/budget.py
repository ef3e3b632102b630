"""A retry budget for the whole fleet: :class:`RedisRetryBudget`."""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING

from seawall import _validate
from seawall.core.budget import DEFAULT_MIN_PER_SECOND, DEFAULT_RATIO, RetryBudget
from seawall.integrations.redis._common import (
    _position,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from seawall.integrations.redis.breaker import (
        AsyncRedisBreakerStore,
        RedisBreakerStore,
    )


# -- the fleet retry budget -----------------------------------------------------


class RedisRetryBudget:
    """A retry budget for the whole fleet, kept in Redis by a breaker store's sync step.

    Every call deposits ``ratio`` of a token into one bucket for all replicas;
    every retry takes a whole one; ``min_per_second`` and ``capacity`` are the
    fleet's (see :class:`~seawall.core.budget.RetryBudget` for the bound).
    Neither method makes a round trip: ``deposit()`` is one C-level counter
    increment (as cheap as the local budget's), counted into the fleet bucket
    by the next sync step, and retries take tokens from a small pocket that the sync
    step leases from the fleet bucket (sized to the retries asked for in the
    last interval; surplus goes back). An empty pocket refuses and, if the
    fleet had tokens, wakes the sync step to refill it. While Redis is
    unreachable, an empty pocket falls back to a local :class:`RetryBudget`
    with the same settings, that is, per replica.

    Args:
        store: The breaker store whose sync step keeps this budget.
        name: The budget's name; replicas share the budget of the same name.
        ratio: Tokens each call deposits, in [0, 1]. Default 0.1.
        min_per_second: Tokens added per second for the whole fleet. Default 10.
        capacity: The most tokens the fleet bucket holds. Default: 10 seconds
            of ``min_per_second``, at least 1.

    Raises:
        ConfigError: A setting is out of range, or a budget of that name is
            already kept by ``store``.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_calls",
        "_demand",
        "_fallback",
        "_fleet_balance",
        "_lock",
        "_pocket",
        "_refills",
        "_store",
        "capacity",
        "deposit",
        "min_per_second",
        "name",
        "ratio",
    )

    #: Record one call: ``ratio`` of a token, for the fleet and the local fallback.
    deposit: Callable[[], None]

    def __init__(
        self,
        store: RedisBreakerStore | AsyncRedisBreakerStore,
        name: str,
        *,
        ratio: float = DEFAULT_RATIO,
        min_per_second: float = DEFAULT_MIN_PER_SECOND,
        capacity: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            _validate.fail_if([f"name must be a non-empty string, got {name!r}"])
        self._fallback = RetryBudget(ratio, min_per_second, capacity=capacity)  # validates
        self.name = name
        self.ratio = self._fallback.ratio
        self.min_per_second = self._fallback.min_per_second
        self.capacity = self._fallback.capacity
        self._store = store
        self._lock = threading.Lock()
        # One counter serves both: the fallback's own (its deposits), which also
        # takes one number per fallback withdrawal (see RetryBudget); the sync
        # step sends its position less those withdrawals. So a deposit is one
        # C call, with no Python frame, like the local budget's.
        self._calls = self._fallback._calls
        self._refills = 0
        self.deposit = self._calls.__next__  # type: ignore[assignment]  # returns an int, unused
        self._demand = itertools.count()
        self._pocket = 0
        self._fleet_balance: float | None = None
        store._fleet.add_budget(self)

    def try_withdraw(self) -> bool:
        """Take one token for a retry, without I/O; ``False`` (taking nothing) if there is none."""
        next(self._demand)
        with self._lock:
            if self._pocket > 0:
                self._pocket -= 1
                return True
            if self._store.healthy:
                balance = self._fleet_balance
                if balance is None or balance >= 1:
                    self._store._wake()  # the fleet has tokens: refill the pocket soon
                return False
            self._refills += 1
            return self._fallback.try_withdraw()

    def _deposits(self) -> int:
        """Deposits since the budget was built (for the sync step)."""
        with self._lock:
            return _position(self._calls) - self._refills

    @property
    def pocket(self) -> int:
        """Tokens this replica holds, leased from the fleet bucket."""
        return self._pocket

    @property
    def fleet_balance(self) -> float | None:
        """Tokens left in the fleet bucket at the last sync step (``None`` before one)."""
        return self._fleet_balance

    def __repr__(self) -> str:
        return (
            f"RedisRetryBudget({self.name!r}, ratio={self.ratio!r}, "
            f"min_per_second={self.min_per_second!r}, capacity={self.capacity!r})"
        )
