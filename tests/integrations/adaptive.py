"""An adaptive limit, a throttle and load shedding, driven to each of their decisions.

The exporters' tests use these with the real policies on a fake clock. Every
call closes a window of the limit (:data:`WINDOW`), so each call is one step
of its algorithm: AIMD from 2, between 1 and 4, halving on a drop.

Load shedding's ``LoadShed`` comes from the server's middleware; here it is
emitted as that middleware emits it, through the same listeners.
"""

from __future__ import annotations

from typing import Any

import pytest

from seawall.adaptive import AdaptiveLimit
from seawall.core.limit import SampleWindowConfig
from seawall.errors import LimitExceededError, ThrottledError
from seawall.events import Listeners, LoadShed
from seawall.testing import FakeClock
from seawall.throttle import Throttle
from tests.integrations.scenario import Down, fail

#: A window that closes at every call: each call is one sample of the algorithm.
WINDOW = SampleWindowConfig(min_time=1e-9, max_time=1e-9, min_samples=1, min_rtt=0.0)

#: How long each driven call takes on the fake clock, in seconds.
RTT = 0.01


def limit(name: str, clock: FakeClock, listeners: Listeners, **kw: Any) -> AdaptiveLimit:
    """An AIMD limit starting at 2, within [1, 4], halved by a drop."""
    options: dict[str, Any] = {
        "algorithm": "aimd",
        "initial": 2,
        "min": 1,
        "max": 4,
        "backoff_ratio": 0.5,
    }
    options.update(kw)
    return AdaptiveLimit(name, window=WINDOW, clock=clock, listeners=listeners, **options)


def throttle(name: str, clock: FakeClock, listeners: Listeners) -> Throttle:
    """A throttle (k=2) whose draws always shed when the probability is above 0."""
    return Throttle(name, clock=clock, random=lambda: 0.0, min_requests=0, listeners=listeners)


def served(clock: FakeClock) -> Any:
    """A call that takes :data:`RTT` and succeeds."""

    def fn() -> str:
        clock.advance(RTT)
        return "ok"

    return fn


def timed_out(clock: FakeClock) -> Any:
    """A call that takes :data:`RTT` and times out (a drop, for the limit)."""

    def fn() -> None:
        clock.advance(RTT)
        raise TimeoutError("no answer")

    return fn


def raise_limit(lim: AdaptiveLimit, clock: FakeClock) -> None:
    """One served call: with the limit at most 2, AIMD raises it by one."""
    assert lim.call(served(clock)) == "ok"


def cut_limit(lim: AdaptiveLimit, clock: FakeClock) -> None:
    """One call that times out: the limit is halved (rounded down)."""
    with pytest.raises(TimeoutError):
        lim.call(timed_out(clock))


def refuse(lim: AdaptiveLimit) -> None:
    """Hold every permit of ``lim`` and call once more: the call is refused."""
    held = lim.limit
    for _ in range(held):
        lim.acquire()
    try:
        with pytest.raises(LimitExceededError):
            lim.acquire()
    finally:
        for _ in range(held):
            lim.release()


def shed(th: Throttle) -> None:
    """One refused call, then one shed (p = 1/2): requests 2, accepts 0, p now 2/3."""
    with pytest.raises(Down):
        th.call(fail)
    with pytest.raises(ThrottledError):
        th.call(fail)


def load_shed(listeners: Listeners, clock: FakeClock, name: str = "api", priority: int = 2) -> None:
    """Emit what a load-shedding middleware emits when it refuses a request."""
    listeners.emit(
        LoadShed(
            name=name,
            at=clock.monotonic(),
            route="/search",
            priority=priority,
            limit=4,
            in_flight=4,
        )
    )


def drive(lim: AdaptiveLimit, th: Throttle, listeners: Listeners, clock: FakeClock) -> None:
    """Every decision once: the limit up (2 to 3), cut (3 to 1), refusing; a shed; a load shed.

    Afterwards the limit is 1 with nothing in flight and one refusal; the
    throttle's window holds 2 requests, none accepted (probability 2/3); the
    shedder ``api`` refused one priority-2 request.
    """
    raise_limit(lim, clock)
    cut_limit(lim, clock)
    refuse(lim)
    shed(th)
    load_shed(listeners, clock)
