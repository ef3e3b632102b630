"""Type-checked, not run: the public API keeps its types under `mypy --strict`.

scripts/test runs mypy on this file; a decorator that lost a signature, or a
property whose type widened, fails the build here before it reaches users.
"""

from __future__ import annotations

from typing import assert_type

import seawall
from seawall import CircuitBreaker, State

breaker = CircuitBreaker("payment", open_duration=lambda n: 2.0**n)


@breaker
def charge(order_id: str, cents: int) -> bool:
    return cents > 0


@breaker
async def charge_async(order_id: str, cents: int) -> bool:
    return cents > 0


async def use() -> None:
    assert_type(charge("o-1", 100), bool)
    assert_type(await charge_async("o-1", 100), bool)
    assert_type(breaker.call(charge, "o-1", cents=5), bool)
    assert_type(await breaker.call_async(charge_async, "o-1", 5), bool)
    assert_type(breaker.state, State)
    assert_type(breaker.metrics.failure_rate, float)
    with breaker:
        pass
    async with breaker:
        pass
    try:
        charge("o-2", 1)
    except seawall.CircuitOpenError as err:
        assert_type(err.retry_after, float | None)
