"""Bad breaker configuration fails at construction, naming the field and value."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from seawall import CircuitBreaker, ConfigError, CountWindow, TimeWindow


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold must be in (0, 1], got 0"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold must be in (0, 1], got 1.5"),
        ({"failure_rate_threshold": float("nan")}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -0.1}, "slow_call_rate_threshold must be in (0, 1]"),
        ({"slow_call_duration": -1}, "slow_call_duration must be a finite number"),
        ({"minimum_calls": 0}, "minimum_calls must be an integer in [1, 1000000], got 0"),
        ({"minimum_calls": 2.5}, "minimum_calls must be an integer in [1, 1000000], got 2.5"),
        ({"minimum_calls": 10**30}, "minimum_calls must be an integer in [1, 1000000]"),
        ({"minimum_calls": True}, "minimum_calls must be an integer in [1, 1000000], got True"),
        ({"half_open_calls": 0}, "half_open_calls must be an integer >= 1, got 0"),
        ({"open_duration": -5}, "open_duration must be a finite number of seconds > 0, got -5"),
        ({"open_duration": 0}, "open_duration must be a finite number of seconds > 0, got 0"),
        (
            {"open_duration": lambda n: 0.0},
            "open_duration(1) must be a finite number of seconds > 0",
        ),
        ({"slow_call_duration": 0}, "slow_call_duration must be a finite number of seconds > 0"),
        ({"shadow": "yes"}, "shadow must be true or false, got 'yes'"),
        ({"shadow": 1}, "shadow must be true or false, got 1"),
        ({"open_duration": float("inf")}, "open_duration must be a finite number"),
        ({"open_duration": lambda n: -1.0}, "open_duration(1) must be a finite number"),
        ({"open_duration": lambda n: 1 / 0}, "open_duration(1) raised ZeroDivisionError"),
        ({"half_open_max_wait": 0}, "half_open_max_wait must be a finite number of seconds > 0"),
        ({"window": 100}, "window must be a CountWindow or a TimeWindow, got 100"),
        ({"record": ()}, "record must name at least one exception type"),
        ({"record": "ValueError"}, "record must be an exception type"),
        ({"ignore": (ValueError, int)}, "ignore must be an exception type or a tuple of them"),
    ],
)
def test_bad_option_names_field_and_value(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker("dep", **options)
    assert message in str(info.value)


def test_every_bad_field_is_reported_at_once() -> None:
    """One ConfigError lists all bad fields, not just the first."""
    with pytest.raises(ConfigError) as info:
        CircuitBreaker("dep", minimum_calls=0, half_open_calls=0, failure_rate_threshold=2)
    text = str(info.value)
    assert "minimum_calls" in text
    assert "half_open_calls" in text
    assert "failure_rate_threshold" in text


@pytest.mark.parametrize("name", ["", None, 3])
def test_name_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(ConfigError, match="name must be a non-empty string"):
        CircuitBreaker(name)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CountWindow(0), "window.size must be an integer in [1, 1000000], got 0"),
        (lambda: CountWindow(10**30), "window.size must be an integer in [1, 1000000]"),
        (lambda: TimeWindow(0), "window.seconds must be a finite number of seconds > 0, got 0"),
        (
            lambda: TimeWindow(10, buckets=0),
            "window.buckets must be an integer in [1, 10000], got 0",
        ),
        (lambda: TimeWindow(10, buckets=10**9), "window.buckets must be an integer in [1, 10000]"),
    ],
)
def test_bad_windows(make: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value)


def test_config_error_is_a_value_error() -> None:
    """Code that validates input with `except ValueError` catches it too."""
    with pytest.raises(ValueError, match="minimum_calls"):
        CircuitBreaker("dep", minimum_calls=-1)


def test_timedelta_durations_are_accepted() -> None:
    """Durations may be given as timedelta, like stamina allows."""
    b = CircuitBreaker(
        "dep",
        open_duration=timedelta(seconds=45),
        slow_call_duration=timedelta(milliseconds=1500),
        half_open_max_wait=timedelta(minutes=1),
    )
    assert b.config.open_duration == 45.0
    assert b.config.slow_call_duration == 1.5
    assert b.config.half_open_max_wait == 60.0


def test_config_is_frozen() -> None:
    b = CircuitBreaker("dep")
    with pytest.raises(AttributeError):
        b.config.minimum_calls = 1  # type: ignore[misc]
