"""The retry budget: a token bucket of ratio per call plus a per-second floor, capped."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core.budget import Budget, RetryBudget
from seawall.errors import ConfigError
from seawall.testing import FakeClock


def drain(budget: RetryBudget) -> int:
    taken = 0
    while budget.try_withdraw():
        taken += 1
    return taken


def test_starts_full_with_ten_seconds_of_the_floor(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=2.0, clock=clock)
    assert budget.capacity == 20.0
    assert drain(budget) == 20
    assert not budget.try_withdraw()


def test_a_failed_withdrawal_takes_nothing(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, capacity=1.0, clock=clock)
    assert drain(budget) == 1
    budget.deposit()
    assert not budget.try_withdraw()  # half a token: refused, and kept
    budget.deposit()
    assert budget.try_withdraw()


def test_each_call_deposits_ratio_of_a_token(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.25, min_per_second=0.0, capacity=100.0, clock=clock)
    drain(budget)
    for _ in range(40):
        budget.deposit()
    assert budget.balance == pytest.approx(10.0)
    assert drain(budget) == 10


def test_floor_adds_min_per_second_over_time(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=5.0, clock=clock)
    drain(budget)
    clock.advance(0.1)
    assert not budget.try_withdraw()  # half a token so far
    clock.advance(0.1)
    assert budget.try_withdraw()
    clock.advance(2.0)
    assert drain(budget) == 10


def test_balance_is_capped(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=1.0, capacity=5.0, clock=clock)
    for _ in range(1000):
        budget.deposit()
    clock.advance(3600)
    assert budget.balance == 5.0
    assert drain(budget) == 5


def test_ratio_zero_and_no_floor_allows_only_the_initial_burst(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, clock=clock)
    assert budget.capacity == 1.0
    for _ in range(100):
        budget.deposit()
    clock.advance(100)
    assert drain(budget) == 1


def test_is_a_budget() -> None:
    assert isinstance(RetryBudget(), Budget)


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"ratio": -0.1}, "ratio", "-0.1"),
        ({"ratio": 1.5}, "ratio", "1.5"),
        ({"ratio": float("nan")}, "ratio", "nan"),
        ({"ratio": "0.1"}, "ratio", "'0.1'"),
        ({"min_per_second": -1.0}, "min_per_second", "-1.0"),
        ({"capacity": 0.5}, "capacity", "0.5"),
        ({"capacity": float("inf")}, "capacity", "inf"),
    ],
)
def test_bad_values_raise_config_error(kwargs: dict[str, object], field: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryBudget(**kwargs)  # type: ignore[arg-type]
    assert field in str(info.value)
    assert value in str(info.value)


def test_ratio_bounds_are_inclusive() -> None:
    RetryBudget(ratio=0.0)
    RetryBudget(ratio=1.0)


def test_concurrent_deposits_are_all_counted(clock: FakeClock) -> None:
    """Deposits take no lock; none is lost when eight threads make them at once."""
    budget = RetryBudget(ratio=0.001, min_per_second=0.0, capacity=1e6, clock=clock)
    drain(budget)
    per_thread = 20_000

    def work() -> None:
        for _ in range(per_thread):
            budget.deposit()

    threads = [threading.Thread(target=work) for _ in range(8)]
    withdrawer_taken = []

    def withdraw() -> None:
        withdrawer_taken.append(sum(budget.try_withdraw() for _ in range(2000)))

    threads.append(threading.Thread(target=withdraw))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = 8 * per_thread * 0.001
    assert budget.balance + withdrawer_taken[0] == pytest.approx(total)


ops = st.lists(
    st.one_of(
        st.just(("deposit", 0.0)),
        st.just(("withdraw", 0.0)),
        st.tuples(st.just("advance"), st.floats(0.0, 5.0)),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(
    ratio=st.floats(0.0, 1.0),
    floor=st.floats(0.0, 20.0),
    capacity=st.floats(1.0, 50.0),
    steps=ops,
)
def test_lazy_accounting_matches_an_eager_bucket(
    ratio: float, floor: float, capacity: float, steps: list[tuple[str, float]]
) -> None:
    """Counting deposits and folding them in on withdrawal decides exactly like adding each at once."""
    clock = FakeClock()
    budget = RetryBudget(ratio=ratio, min_per_second=floor, capacity=capacity, clock=clock)
    model = capacity
    for op, seconds in steps:
        if op == "deposit":
            budget.deposit()
            model = min(capacity, model + ratio)
        elif op == "advance":
            clock.advance(seconds)
            model = min(capacity, model + seconds * floor)
        else:
            allowed = model >= 1.0 - 1e-9
            if allowed:
                model -= 1.0
            assert budget.try_withdraw() is allowed
    assert budget.balance == pytest.approx(model, abs=1e-6)
