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


retry = seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(0.1, 2.0))
dependency = seawall.Dependency("inventory", timeout=2.0, retry=retry)


@retry
async def reserve(sku: str) -> int:
    return len(sku)


@dependency
async def reserve_through_dependency(sku: str) -> int:
    return len(sku)


async def use_retry_and_dependency() -> None:
    assert_type(await reserve("a"), int)
    assert_type(await reserve_through_dependency("a"), int)
    assert_type(await dependency.call(reserve, "a"), int)
    result = await dependency.call_result(reserve, "a")
    assert_type(result.value, int)
    assert_type(seawall.remaining(), float | None)
    async with seawall.timeout(1.0, name="inventory"):
        pass
    with seawall.deadline(2.0):
        pass
