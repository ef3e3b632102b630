"""The public API: `seawall.__all__` is sorted, complete and importable, and covers the contract."""

from __future__ import annotations

import pytest

import seawall

# DESIGN.md's contract: these names must stay importable from `seawall`.
CONTRACT = [
    "SeawallError", "RejectedError", "CircuitOpenError", "BulkheadFullError", "DeadlineExceeded",
    "RetryError", "DependencyUnavailable", "ConfigError",
    "CircuitBreaker", "CountWindow", "TimeWindow", "State",
    "Retry", "Backoff", "RetryBudget", "transient",
    "Bulkhead", "ThreadBulkhead",
    "timeout", "deadline", "remaining",
    "Dependency", "Criticality", "Fallback",
]  # fmt: skip


def test_all_is_sorted_and_unique() -> None:
    """Constants, then classes, then functions, each alphabetical (isort's order, as ruff keeps it)."""

    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(seawall.__all__) == sorted(set(seawall.__all__), key=order)


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in seawall.__all__:
        obj = getattr(seawall, name)
        if callable(obj) or isinstance(obj, type):
            assert (obj.__doc__ or "").strip(), f"seawall.{name} has no docstring"


def test_contract_names_are_exported() -> None:
    missing = [n for n in CONTRACT if n not in seawall.__all__]
    assert missing == []


def test_testing_helpers() -> None:
    from seawall.testing import FakeClock, RecordingListener

    assert FakeClock.__doc__
    assert RecordingListener.__doc__


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = seawall.no_such_name  # type: ignore[attr-defined]
