"""What counts: ``ignore=`` as a predicate, and ``record_result=`` for calls that return a failure.

Both as resilience4j has them (``ignoreException`` predicates, ``recordResult``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from seawall import CircuitBreaker, ConfigError, CountWindow, Dependency, State
from seawall.events import Listeners
from seawall.testing import FakeClock


class Answer:
    def __init__(self, status: int) -> None:
        self.status = status


def breaker(clock: FakeClock, **options: Any) -> CircuitBreaker:
    options.setdefault("window", CountWindow(4))
    options.setdefault("minimum_calls", 4)
    return CircuitBreaker(
        "api", failure_rate_threshold=0.5, clock=clock, listeners=Listeners(), **options
    )


def failing_status(answer: Answer) -> bool:
    return answer.status >= 500


@pytest.mark.parametrize("form", ["decorator", "call", "async decorator", "call_async"])
def test_a_result_the_predicate_rejects_counts_as_a_failure_and_is_still_returned(
    form: str, clock: FakeClock
) -> None:
    b = breaker(clock, record_result=failing_status)

    def sync(status: int) -> Answer:
        return Answer(status)

    async def async_(status: int) -> Answer:
        return Answer(status)

    def run(status: int) -> Answer:
        if form == "decorator":
            return b(sync)(status)
        if form == "call":
            return b.call(sync, status)
        if form == "async decorator":
            return asyncio.run(b(async_)(status))
        return asyncio.run(b.call_async(async_, status))

    assert run(200).status == 200
    assert run(503).status == 503  # returned as it is: the breaker only counts it
    assert (b.metrics.calls, b.metrics.failures) == (2, 1)
    assert run(200).status == 200
    run(500)
    assert b.state is State.OPEN  # 2 of 4 failed


def test_a_dependency_shows_its_breaker_the_results(clock: FakeClock) -> None:
    b = breaker(clock, record_result=failing_status)
    dep = Dependency("api", breaker=b, clock=clock, listeners=Listeners())

    async def fetch(status: int) -> Answer:
        return Answer(status)

    async def main() -> None:
        for status in (200, 502, 200):
            assert (await dep.call(fetch, status)).status == status

    asyncio.run(main())
    assert b.state is State.CLOSED
    assert dep.call_sync(lambda: Answer(503)).status == 503
    assert b.state is State.OPEN  # 2 of 4 failed, one of them in the sync path


def test_without_record_result_every_return_is_a_success(clock: FakeClock) -> None:
    b = breaker(clock)
    for _ in range(4):
        assert b.call(Answer, 503).status == 503
    assert (b.metrics.calls, b.metrics.failures, b.state) == (4, 0, State.CLOSED)


def test_ignore_as_a_predicate_counts_those_errors_as_neither(clock: FakeClock) -> None:
    """A client's own mistake (a 404) says nothing about the dependency's health."""

    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    b = breaker(clock, ignore=lambda exc: isinstance(exc, HTTPError) and exc.status < 500)

    def fail(status: int) -> None:
        raise HTTPError(status)

    for status in (404, 404, 422, 503):
        with pytest.raises(HTTPError):
            b.call(fail, status)
    assert (b.metrics.calls, b.metrics.failures) == (1, 1)


def test_a_predicate_that_raises_is_false_and_said_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(value: object) -> bool:
        raise RuntimeError("bug in the predicate")

    b = breaker(
        clock, record_result=broken, ignore=broken, window=CountWindow(10), minimum_calls=10
    )
    with caplog.at_level(logging.ERROR, logger="seawall.breaker"):
        for _ in range(3):
            assert b.call(Answer, 503).status == 503  # the caller's answer stands
            with pytest.raises(ValueError, match="boom"):
                b.call(_raise_value_error)
    assert (b.metrics.calls, b.metrics.failures) == (6, 3)  # as if neither were set
    said = [r.getMessage() for r in caplog.records]
    assert sum("record_result= predicate raised" in m for m in said) == 1
    assert sum("ignore= predicate raised" in m for m in said) == 1


def _raise_value_error() -> None:
    raise ValueError("boom")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"record_result": 3}, "record_result must be callable or None, got 3"),
        ({"ignore": "KeyError"}, "ignore must be an exception type or a tuple of them"),
    ],
)
def test_bad_predicates_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CircuitBreaker("api", **options)
