"""The whole order stack as real processes, shared by a test module and reset between tests."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from examples.orders.policies import Policies
from examples.orders.settings import DOWNSTREAMS, Settings
from examples.orders.stack import Stack

#: The service's own policies file, read by the service's own loader.
POLICIES = Policies.load(Settings().policies)


def reset(stack: Stack) -> None:
    for name in DOWNSTREAMS:
        stack.fault(name)
        httpx.post(stack.simulators[name].url + "/_control/reset", timeout=5)
    assert stack.service is not None
    httpx.delete(stack.service.url + "/_admin/faults/all", timeout=5)
    httpx.post(stack.service.url + "/_admin/reset", timeout=5)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


@pytest.fixture
def orders(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the service (the client's own timeout is the hierarchy's top: 30 s)."""
    reset(stack)
    assert stack.service is not None
    with httpx.Client(base_url=stack.service.url, timeout=30) as client:
        yield client
    reset(stack)


def order(
    client: httpx.Client, user: str = "u-1", sku: str = "sku-001", qty: int = 1
) -> httpx.Response:
    return client.post("/orders", json={"user_id": user, "items": [{"sku": sku, "qty": qty}]})


def eventually(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            last = check()
            if last:
                return last
        time.sleep(interval)
    msg = f"not true within {timeout}s (last: {last!r})"
    raise AssertionError(msg)


def arrival_gaps(stack: Stack, downstream: str, path: str) -> list[float]:
    """Seconds between the successive requests a simulator received on ``path``."""
    times = stack.simulator_state(downstream)["arrivals"].get(path, [])
    return [later - earlier for earlier, later in itertools.pairwise(times)]
