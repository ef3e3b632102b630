"""Adaptive limit algorithms (sans-IO): Gradient2 and AIMD, against the rules they follow."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core.limit import (
    Aimd,
    AimdConfig,
    ExpAverage,
    Gradient2,
    Gradient2Config,
    LimitAlgorithm,
)
from seawall.errors import ConfigError

samples = st.lists(
    st.tuples(
        st.floats(0.0, 30.0, allow_nan=False),  # rtt
        st.integers(0, 400),  # in flight
        st.booleans(),  # dropped
    ),
    max_size=200,
)


@settings(max_examples=100, deadline=None)
@given(samples=samples, initial=st.integers(1, 50), low=st.integers(1, 10))
def test_every_limit_stays_within_min_and_max(
    samples: list[tuple[float, int, bool]], initial: int, low: int
) -> None:
    high = max(initial, low) + 20
    start = max(initial, low)
    for algorithm in (
        Gradient2(Gradient2Config(initial=start, min=low, max=high)),
        Aimd(AimdConfig(initial=start, min=low, max=high)),
    ):
        assert isinstance(algorithm, LimitAlgorithm)
        for rtt, in_flight, dropped in samples:
            limit = algorithm.on_sample(rtt, in_flight, dropped)
            assert limit == algorithm.limit
            assert low <= limit <= high


@settings(max_examples=100, deadline=None)
@given(samples=samples)
def test_an_idle_caller_never_grows_the_limit(samples: list[tuple[float, int, bool]]) -> None:
    """Below half the limit in use, nothing is learnt about the dependency's capacity."""
    gradient = Gradient2(Gradient2Config(initial=40, max=200, probe_interval=0))
    aimd = Aimd(AimdConfig(initial=40, max=200))
    for rtt, in_flight, _dropped in samples:
        for algorithm in (gradient, aimd):
            before = algorithm.limit
            algorithm.on_sample(rtt, min(in_flight, (before - 1) // 2), dropped=False)
            assert algorithm.limit <= before


def test_gradient2_grows_while_latency_holds_and_shrinks_when_it_rises() -> None:
    algorithm = Gradient2(
        Gradient2Config(initial=20, max=1000, smoothing=0.2, queue_size=4, probe_interval=0)
    )
    for _ in range(50):
        algorithm.on_sample(0.1, in_flight=algorithm.limit, dropped=False)
    grown = algorithm.limit
    # Within tolerance the gradient is 1: each sample adds smoothing x queue_size.
    assert grown == pytest.approx(20 + 50 * 0.2 * 4, abs=1)
    # Four times the baseline: gradient 1.5 x 0.1 / 0.4 = 0.375, clamped to 0.5 at worst.
    algorithm.on_sample(0.4, in_flight=grown, dropped=False)
    expected = grown * 0.8 + (grown * 0.5 + 4) * 0.2
    assert algorithm.limit == int(expected)
    for _ in range(30):
        algorithm.on_sample(0.4, in_flight=algorithm.limit, dropped=False)
    assert algorithm.limit < grown / 2


def test_gradient2_tolerates_latency_up_to_its_tolerance() -> None:
    algorithm = Gradient2(Gradient2Config(initial=20, max=1000, tolerance=1.5))
    for _ in range(20):
        algorithm.on_sample(0.1, in_flight=algorithm.limit, dropped=False)
    before = algorithm.limit
    for _ in range(5):
        algorithm.on_sample(0.14, in_flight=algorithm.limit, dropped=False)  # 1.4x: within 1.5x
    assert algorithm.limit >= before + 3  # still growing by smoothing x queue_size a sample


def test_gradient2_baseline_drifts_down_quickly_after_a_long_overload() -> None:
    algorithm = Gradient2(Gradient2Config(long_window=600, probe_interval=0))
    for _ in range(10):
        algorithm.on_sample(1.0, in_flight=algorithm.limit, dropped=False)  # warm-up: 1 s
    assert algorithm.long_rtt.value == pytest.approx(1.0)
    algorithm.on_sample(0.1, in_flight=algorithm.limit, dropped=False)
    # The average alone would be 1 - 0.9 x 2/601; more than twice the latest, it also drops 5 %.
    assert algorithm.long_rtt.value == pytest.approx((1.0 - 0.9 * 2 / 601) * 0.95)


def test_gradient2_survives_a_zero_rtt() -> None:
    algorithm = Gradient2()
    assert algorithm.on_sample(0.0, in_flight=20, dropped=False) >= 1


def test_aimd_adds_one_and_multiplies_on_a_drop_or_a_slow_call() -> None:
    algorithm = Aimd(AimdConfig(initial=10, backoff_ratio=0.5, timeout=1.0, max=100))
    assert algorithm.on_sample(0.1, in_flight=5, dropped=False) == 11  # half in use: grow
    assert algorithm.on_sample(0.1, in_flight=4, dropped=False) == 11  # below half: hold
    assert algorithm.on_sample(0.1, in_flight=6, dropped=True) == 5
    assert algorithm.on_sample(1.5, in_flight=6, dropped=False) == 2  # over the timeout
    assert algorithm.on_sample(1.5, in_flight=6, dropped=False) == 1  # never below min


def test_exp_average_warms_up_plainly_then_decays() -> None:
    average = ExpAverage(window=3, warmup=2)
    assert average.add(2.0) == 2.0
    assert average.add(4.0) == 3.0  # plain mean of the warm-up
    assert average.add(7.0) == pytest.approx(3.0 + (7.0 - 3.0) * 0.5)  # factor 2/(3+1)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (lambda: Gradient2Config(initial=0), "initial"),
        (lambda: Gradient2Config(initial=5, min=10), "within"),
        (lambda: Gradient2Config(max=True), "max"),  # type: ignore[arg-type]
        (lambda: Gradient2Config(smoothing=0), "smoothing"),
        (lambda: Gradient2Config(smoothing=1.5), "smoothing"),
        (lambda: Gradient2Config(tolerance=0.9), "tolerance"),
        (lambda: Gradient2Config(tolerance=float("inf")), "tolerance"),
        (lambda: Gradient2Config(long_window=0), "long_window"),
        (lambda: Gradient2Config(queue_size=-1), "queue_size"),
        (lambda: AimdConfig(backoff_ratio=1.0), "backoff_ratio"),
        (lambda: AimdConfig(backoff_ratio=0.4), "backoff_ratio"),
        (lambda: AimdConfig(timeout=0), "timeout"),
        (lambda: AimdConfig(initial=300), "within"),
    ],
)
def test_bad_parameters_fail_at_construction_naming_the_field(config, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        config()
