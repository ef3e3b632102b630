"""seawall: keep an API serving while its dependencies fail.

Retry with backoff and jitter, circuit breakers, bulkheads, deadlines that
propagate, and fallbacks chosen by a dependency's criticality; sync and
asyncio over one sans-IO core. ``import seawall`` needs no third-party package.
"""

from __future__ import annotations

from typing import Any

from seawall._clock import MONOTONIC, Clock, MonotonicClock
from seawall.adaptive import AdaptiveLimit
from seawall.breaker import BreakerConfig, BreakerMetrics, CircuitBreaker
from seawall.bulkhead import Bulkhead, BulkheadConfig, ThreadBulkhead
from seawall.core.backoff import Backoff
from seawall.core.breaker_state import State
from seawall.core.budget import Budget, RetryBudget
from seawall.core.window import CountWindow, TimeWindow
from seawall.dependency import Criticality, Dependency, DependencyConfig, is_unavailable
from seawall.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    DependencyUnavailable,
    LimitExceededError,
    LoadShedError,
    RejectedError,
    RetryError,
    SeawallError,
    ThrottledError,
)
from seawall.events import LISTENERS, Listeners
from seawall.fallback import (
    AsyncStaleStore,
    DegradationRecord,
    Degraded,
    Fallback,
    MemoryStaleStore,
    Result,
    StaleStore,
    current_degradations,
    track_degradations,
)
from seawall.health import BreakerReading, Check, CheckResult, Health, HealthReport
from seawall.outbox import Outbox, OutboxConfig, OutboxEntry
from seawall.registry import BudgetProblem, Registry
from seawall.retry import Attempt, Retry, RetryConfig, Transient, transient
from seawall.throttle import Throttle
from seawall.timeouts import current_deadline, deadline, remaining, timeout

__all__ = [
    "LISTENERS",
    "MONOTONIC",
    "AdaptiveLimit",
    "AsyncStaleStore",
    "Attempt",
    "Backoff",
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerReading",
    "Budget",
    "BudgetProblem",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadFullError",
    "Check",
    "CheckResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "CountWindow",
    "Criticality",
    "DeadlineExceeded",
    "DegradationRecord",
    "Degraded",
    "Dependency",
    "DependencyConfig",
    "DependencyUnavailable",
    "Fallback",
    "Health",
    "HealthReport",
    "LimitExceededError",
    "Listeners",
    "LoadShedError",
    "MemoryStaleStore",
    "MonotonicClock",
    "Outbox",
    "OutboxConfig",
    "OutboxEntry",
    "Registry",
    "RejectedError",
    "Result",
    "Retry",
    "RetryBudget",
    "RetryConfig",
    "RetryError",
    "SeawallError",
    "StaleStore",
    "State",
    "ThreadBulkhead",
    "Throttle",
    "ThrottledError",
    "TimeWindow",
    "Transient",
    "current_deadline",
    "current_degradations",
    "deadline",
    "is_unavailable",
    "remaining",
    "timeout",
    "track_degradations",
    "transient",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from seawall._version import __version__  # noqa: PLC0415 - read on demand

        return __version__
    msg = f"module 'seawall' has no attribute {name!r}"
    raise AttributeError(msg)
