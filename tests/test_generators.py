"""A policy never silently fails to protect a generator: decorating one is a clear error.

A generator function's body runs as the generator is iterated, after the
decorated call has returned. Wrapped around the call, a breaker counted every
call a success and never saw an error raised after the first ``yield``; a
retry retried nothing. pybreaker and circuitbreaker count those errors; seawall
refuses at decoration rather than pretend.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from seawall import (
    AdaptiveLimit,
    Bulkhead,
    CircuitBreaker,
    Dependency,
    Retry,
    ThreadBulkhead,
    Throttle,
)
from seawall.events import Listeners


def gen() -> Iterator[int]:
    yield 1
    raise ConnectionError("after the first item")


async def agen() -> AsyncIterator[int]:
    yield 1
    raise ConnectionError("after the first item")


def policies() -> list[tuple[str, Callable[[Any], Any]]]:
    listeners = Listeners()
    return [
        ("CircuitBreaker 'b'", CircuitBreaker("b", listeners=listeners)),
        ("Retry", Retry(attempts=2, listeners=listeners)),
        ("Dependency 'd'", Dependency("d", listeners=listeners)),
        ("AdaptiveLimit 'a'", AdaptiveLimit("a", listeners=listeners)),
        ("Throttle 't'", Throttle("t", listeners=listeners)),
        ("Bulkhead 'k'", Bulkhead("k", max_concurrent=1, listeners=listeners)),
        ("ThreadBulkhead 'h'", ThreadBulkhead("h", max_concurrent=1, listeners=listeners)),
    ]


@pytest.mark.parametrize("fn", [gen, agen], ids=["generator", "async generator"])
@pytest.mark.parametrize("index", range(len(policies())), ids=[n for n, _ in policies()])
def test_decorating_a_generator_function_is_refused(fn: Callable[..., Any], index: int) -> None:
    name, policy = policies()[index]
    kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
    with pytest.raises(TypeError) as info:
        policy(fn)
    message = str(info.value)
    assert message.startswith(f"{name} cannot protect {kind} function ({fn.__qualname__})")
    assert "consumes it" in message


def test_a_function_that_consumes_the_generator_is_protected() -> None:
    """What the message advises: the errors are raised inside the call, and counted."""
    breaker = CircuitBreaker("b", minimum_calls=1, listeners=Listeners())

    @breaker
    def items() -> list[int]:
        return list(gen())

    with pytest.raises(ConnectionError):
        items()
    assert breaker.metrics.failures == 1
