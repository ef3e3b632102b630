"""seawall: keep an API serving while its dependencies fail.

Retry with backoff and jitter, circuit breakers, bulkheads, deadlines that
propagate, and fallbacks chosen by a dependency's criticality; sync and
asyncio over one sans-IO core. ``import seawall`` needs no third-party package.
"""

from __future__ import annotations

from typing import Any

from seawall._clock import MONOTONIC, Clock, MonotonicClock
from seawall.breaker import BreakerConfig, BreakerMetrics, CircuitBreaker
from seawall.bulkhead import Bulkhead, BulkheadConfig, ThreadBulkhead
from seawall.core.breaker_state import State
from seawall.core.window import CountWindow, TimeWindow
from seawall.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    DependencyUnavailable,
    RejectedError,
    RetryError,
    SeawallError,
)
from seawall.events import LISTENERS, Listeners
from seawall.outbox import Outbox, OutboxConfig, OutboxEntry

__all__ = [
    "LISTENERS",
    "MONOTONIC",
    "BreakerConfig",
    "BreakerMetrics",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadFullError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "CountWindow",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "Listeners",
    "MonotonicClock",
    "Outbox",
    "OutboxConfig",
    "OutboxEntry",
    "RejectedError",
    "RetryError",
    "SeawallError",
    "State",
    "ThreadBulkhead",
    "TimeWindow",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from seawall._version import __version__  # noqa: PLC0415 - read on demand

        return __version__
    msg = f"module 'seawall' has no attribute {name!r}"
    raise AttributeError(msg)
