"""The exception hierarchy of the contract, and that every error pickles."""

from __future__ import annotations

import pickle

import pytest

from seawall import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    DependencyUnavailable,
    RejectedError,
    RetryError,
    SeawallError,
)


def test_hierarchy() -> None:
    assert issubclass(RejectedError, SeawallError)
    assert issubclass(CircuitOpenError, RejectedError)
    assert issubclass(BulkheadFullError, RejectedError)
    assert issubclass(DeadlineExceeded, SeawallError)
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(RetryError, SeawallError)
    assert issubclass(DependencyUnavailable, SeawallError)
    assert issubclass(ConfigError, SeawallError)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            CircuitOpenError(name="pay", retry_after=12.34),
            "circuit 'pay' is open; next probe in 12.3s",
        ),
        (CircuitOpenError(name="pay", retry_after=None), "circuit 'pay' is open"),
        (BulkheadFullError(name="inv", max_concurrent=10), "bulkhead 'inv' is full (10 in use)"),
        (DeadlineExceeded(name="pay", timeout=2.5), "'pay' exceeded after 2.5s"),
        (DeadlineExceeded(), "deadline exceeded"),
        (RetryError(last_exception=OSError("down"), attempts=3), "gave up after 3 attempt(s)"),
        (
            DependencyUnavailable(name="pay", cause=OSError()),
            "dependency 'pay' is unavailable: OSError",
        ),
    ],
)
def test_messages_and_pickling(error: SeawallError, text: str) -> None:
    """Messages name what failed; errors survive pickling with their attributes."""
    assert text in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    for key, value in vars(error).items():
        if isinstance(value, BaseException):
            assert type(vars(copy)[key]) is type(value)
        else:
            assert vars(copy)[key] == value
