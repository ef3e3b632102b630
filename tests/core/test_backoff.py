"""Backoff schedules and Retry-After parsing (sans-IO: no clock, no sleep)."""

from __future__ import annotations

import email.utils
import itertools
import math
import random
from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core.backoff import Backoff, parse_retry_after, retry_after_of
from seawall.errors import ConfigError

NOW = 1_700_000_000.0  # a fixed wall-clock "now" for HTTP dates


def take(backoff: Backoff, n: int, rand: random.Random | None = None) -> list[float]:
    return list(itertools.islice(backoff.delays(rand.random if rand else None), n))


def http_date(at: float) -> str:
    return email.utils.formatdate(at, usegmt=True)


# -- schedules ------------------------------------------------------------------


def test_constant_repeats_its_delay() -> None:
    assert take(Backoff.constant(0.25), 5) == [0.25] * 5


def test_linear_grows_by_step_up_to_maximum() -> None:
    assert take(Backoff.linear(0.1, 0.2, 0.6), 6) == pytest.approx([0.1, 0.3, 0.5, 0.6, 0.6, 0.6])


def test_linear_with_zero_step_stays_at_initial() -> None:
    assert take(Backoff.linear(0.5, 0.0, 2.0), 4) == [0.5] * 4


def test_exponential_without_jitter_doubles_to_maximum() -> None:
    b = Backoff.exponential(0.1, 1.0, jitter=None)
    assert take(b, 6) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_exponential_multiplier_is_used() -> None:
    b = Backoff.exponential(1.0, 100.0, multiplier=3.0, jitter=None)
    assert take(b, 4) == pytest.approx([1.0, 3.0, 9.0, 27.0])


def test_exponential_never_overflows_after_many_retries() -> None:
    """initial * multiplier ** 5000 would overflow a float; the schedule stays at its cap."""
    b = Backoff.exponential(0.1, 30.0, multiplier=10.0, jitter=None)
    delays = take(b, 5000)
    assert delays[-1] == 30.0
    assert all(math.isfinite(d) for d in delays)


def test_full_jitter_spreads_uniformly_over_zero_to_cap() -> None:
    """20,000 full-jitter delays at the cap fill each tenth of [0, cap] about equally."""
    cap = 2.0
    b = Backoff.exponential(cap, cap, jitter="full")
    samples = take(b, 20_000, random.Random(1234))
    assert all(0.0 <= d <= cap for d in samples)
    assert min(samples) < 0.01 * cap
    assert max(samples) > 0.99 * cap
    bins = Counter(min(int(d / cap * 10), 9) for d in samples)
    for tenth in range(10):
        # Binomial(20000, 0.1): sd ~ 42, so +-300 is over 7 sd.
        assert 1700 <= bins[tenth] <= 2300, (tenth, bins)
    assert abs(sum(samples) / len(samples) - cap / 2) < 0.02 * cap


def test_full_jitter_bound_follows_the_schedule() -> None:
    """Each full-jitter delay lies in [0, the unjittered delay at that position]."""
    b = Backoff.exponential(0.1, 5.0, jitter="full")
    plain = take(Backoff.exponential(0.1, 5.0, jitter=None), 12)
    # random() returns values just below 1: the delays approach the schedule from below.
    delays = list(itertools.islice(b.delays(lambda: 0.999999), 12))
    for d, p in zip(delays, plain, strict=True):
        assert 0.999 * p <= d <= p
    zeros = list(itertools.islice(b.delays(lambda: 0.0), 12))
    assert zeros == [0.0] * 12


def test_equal_jitter_keeps_at_least_half() -> None:
    b = Backoff.exponential(1.0, 1.0, jitter="equal")
    samples = take(b, 5000, random.Random(7))
    assert all(0.5 <= d <= 1.0 for d in samples)
    assert min(samples) < 0.52
    assert max(samples) > 0.98


def test_decorrelated_draws_between_initial_and_three_times_previous() -> None:
    b = Backoff.exponential(0.1, 50.0, jitter="decorrelated")
    delays = take(b, 2000, random.Random(99))
    previous = 0.1
    for d in delays:
        assert 0.1 <= d <= min(50.0, previous * 3) + 1e-12
        previous = d
    assert max(delays) == pytest.approx(50.0, rel=0.2)


def test_jitter_source_is_injectable_and_iterators_are_independent() -> None:
    b = Backoff.exponential(0.1, 10.0, jitter="decorrelated")
    first = take(b, 10, random.Random(5))
    assert take(b, 10, random.Random(5)) == first
    assert take(b, 10, random.Random(6)) != first


def test_default_random_source_stays_in_bounds() -> None:
    delays = list(itertools.islice(Backoff.exponential(0.1, 1.0).delays(), 100))
    assert all(0.0 <= d <= 1.0 for d in delays)


jitters = st.sampled_from(["full", "equal", "decorrelated", None])


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(1e-6, 100.0),
    extra=st.floats(0.0, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    jitter=jitters,
    draws=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=60),
)
def test_exponential_delays_stay_within_their_bounds(
    initial: float, extra: float, multiplier: float, jitter: str | None, draws: list[float]
) -> None:
    """Whatever the parameters and random draws, each delay is within its jitter's bounds."""
    maximum = initial + extra
    b = Backoff.exponential(initial, maximum, multiplier=multiplier, jitter=jitter)  # type: ignore[arg-type]
    source = iter(draws * 2)
    delays = list(itertools.islice(b.delays(lambda: next(source)), len(draws)))
    plain = take(
        Backoff.exponential(initial, maximum, multiplier=multiplier, jitter=None), len(draws)
    )
    previous = initial
    for d, p in zip(delays, plain, strict=True):
        assert 0.0 <= d <= maximum
        if jitter is None:
            assert d == p
        elif jitter == "full":
            assert d <= p
        elif jitter == "equal":
            assert p / 2 <= d <= p
        else:
            assert initial <= d <= max(initial, min(maximum, previous * 3)) * (1 + 1e-12)
            previous = d
    assert plain == sorted(plain)


@settings(max_examples=100, deadline=None)
@given(initial=st.floats(0.0, 10.0), step=st.floats(0.0, 10.0), extra=st.floats(0.0, 100.0))
def test_linear_delays_are_non_decreasing_and_capped(
    initial: float, step: float, extra: float
) -> None:
    b = Backoff.linear(initial, step, initial + extra)
    delays = take(b, 50)
    assert delays[0] == min(initial, initial + extra)
    assert delays == sorted(delays)
    assert all(d <= initial + extra for d in delays)


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [
        (lambda: Backoff.constant(-1.0), "delay", "-1.0"),
        (lambda: Backoff.constant(math.nan), "delay", "nan"),
        (lambda: Backoff.linear(-0.1, 0.1, 1.0), "initial", "-0.1"),
        (lambda: Backoff.linear(0.1, -0.5, 1.0), "step", "-0.5"),
        (lambda: Backoff.linear(2.0, 0.1, 1.0), "maximum", "1.0"),
        (lambda: Backoff.exponential(0.0, 1.0), "initial", "0.0"),
        (lambda: Backoff.exponential(-1.0, 1.0), "initial", "-1.0"),
        (lambda: Backoff.exponential(1.0, 0.5), "maximum", "0.5"),
        (lambda: Backoff.exponential(0.1, math.inf), "maximum", "inf"),
        (lambda: Backoff.exponential(0.1, 1.0, multiplier=0.5), "multiplier", "0.5"),
        (lambda: Backoff.exponential(0.1, 1.0, jitter="lots"), "jitter", "'lots'"),  # type: ignore[arg-type]
        (lambda: Backoff.exponential("1", 2.0), "initial", "'1'"),  # type: ignore[arg-type]
        (
            lambda: Backoff(kind="constant", initial=1.0, maximum=1.0, jitter="full"),
            "jitter",
            "'full'",
        ),
    ],
)
def test_bad_values_raise_config_error_naming_field_and_value(make, field: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert field in str(info.value)
    assert value in str(info.value)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Backoff.exponential(-1.0, 1.0, multiplier=0.0, jitter="x")  # type: ignore[arg-type]
    message = str(info.value)
    assert "initial" in message
    assert "multiplier" in message
    assert "jitter" in message


def test_backoff_is_immutable_and_exposes_maximum() -> None:
    b = Backoff.exponential(0.1, 10.0)
    assert b.maximum == 10.0
    with pytest.raises(AttributeError):
        b.maximum = 1.0  # type: ignore[misc]


# -- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (b"7", 7.0),
        (2, 2.0),
        (0.25, 0.25),
        ("864000", 864000.0),  # absurd but well-formed: the caller caps it
    ],
)
def test_delta_seconds(value: object, expected: float) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == expected


def test_http_date_in_the_future_gives_seconds_until_then() -> None:
    assert parse_retry_after(http_date(NOW + 30), now=lambda: NOW) == pytest.approx(30.0)


def test_obsolete_http_date_formats_parse_too() -> None:
    """RFC 9110 asks recipients to accept RFC 850 and asctime dates as well."""
    at = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    for text in (
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ):
        assert parse_retry_after(text, now=lambda: at - 10) == pytest.approx(10.0), text


def test_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after(http_date(NOW - 3600), now=lambda: NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "soon",
        "-5",
        "+5",
        "1e3",
        "NaN",
        "inf",
        "12abc",
        "1.2.3",
        "\u0661\u0662",  # Arabic-Indic digits: isdigit() but not delta-seconds
        "Mon, 99 Foo 2024 99:99:99 GMT",
        "9" * 200,
        -1,
        -0.5,
        math.nan,
        math.inf,
        True,
        None,
        object(),
        ["5"],
    ],
)
def test_garbage_gives_none(value: object) -> None:
    assert parse_retry_after(value, now=lambda: NOW) is None


def test_retry_after_attribute_on_an_exception() -> None:
    exc = Exception()
    exc.retry_after = 4.0  # type: ignore[attr-defined]
    assert retry_after_of(exc) == 4.0


def test_retry_after_header_on_an_attached_response() -> None:
    exc = Exception()
    exc.response = SimpleNamespace(headers={"Retry-After": "9"})  # type: ignore[attr-defined]
    assert retry_after_of(exc) == 9.0


def test_lower_case_header_in_a_plain_dict() -> None:
    response = SimpleNamespace(headers={"retry-after": "2"})
    assert retry_after_of(response) == 2.0


def test_http_date_header_uses_the_given_wall_clock() -> None:
    response = SimpleNamespace(headers={"Retry-After": http_date(NOW + 12)})
    assert retry_after_of(response, now=lambda: NOW) == pytest.approx(12.0)


def test_garbage_attribute_falls_back_to_header() -> None:
    exc = Exception()
    exc.retry_after = "later"  # type: ignore[attr-defined]
    exc.response = SimpleNamespace(headers={"Retry-After": "3"})  # type: ignore[attr-defined]
    assert retry_after_of(exc) == 3.0


def test_nothing_usable_gives_none() -> None:
    assert retry_after_of(ValueError("x")) is None
    assert retry_after_of(SimpleNamespace(headers={"Retry-After": "whenever"})) is None
    assert retry_after_of(SimpleNamespace(response=None)) is None
    assert retry_after_of(SimpleNamespace(headers="not a mapping")) is None


def test_attributes_that_raise_are_ignored() -> None:
    class Hostile(Exception):
        @property
        def retry_after(self) -> float:
            raise RuntimeError

    class Headers:
        def get(self, key: str) -> str:
            raise RuntimeError

    assert retry_after_of(Hostile()) is None
    assert retry_after_of(SimpleNamespace(headers=Headers())) is None
