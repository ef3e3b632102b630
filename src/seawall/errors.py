"""The exceptions seawall raises.

Everything derives from :class:`SeawallError`, so one ``except`` catches the
toolkit's own decisions and nothing else::

    SeawallError
    ├── RejectedError            a call refused without being attempted
    │   ├── CircuitOpenError     ... by an open (or full half-open) breaker
    │   ├── BulkheadFullError    ... by a bulkhead with no free permit
    │   │   └── LimitExceededError   ... by an adaptive limit, at its current limit
    │   ├── ThrottledError       ... by client-side adaptive throttling
    │   └── LoadShedError        ... by the service's own load shedding
    ├── DeadlineExceeded         a timeout or the ambient deadline ran out (also a TimeoutError)
    ├── RetryError               retries ran out and ``reraise=False`` was asked for
    ├── DependencyUnavailable    a critical dependency failed after all its policies
    └── ConfigError              bad configuration, raised at construction (also a ValueError)

:class:`RejectedError` exists so that "never retry a rejection" is a single
``isinstance`` check. Constructors take keyword arguments; every exception
pickles (it crosses process pools and task queues).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "LimitExceededError",
    "LoadShedError",
    "RejectedError",
    "RetryError",
    "SeawallError",
    "ThrottledError",
]


class SeawallError(Exception):
    """Base class of every exception raised by seawall itself."""


class RejectedError(SeawallError):
    """A call was refused without being attempted; the downstream saw nothing.

    A rejection is never retried: it means "back off", and retrying it would only
    add load to the process that is protecting itself.
    """


class CircuitOpenError(RejectedError):
    """A circuit breaker rejected the call.

    Attributes:
        name: The breaker's (usually the dependency's) name.
        retry_after: Seconds until the breaker admits a probe again, or ``None``
            when no probe is scheduled (the breaker was forced open, or its
            half-open probes are all in flight).
    """

    __slots__ = ("name", "retry_after")

    def __init__(self, *, name: str, retry_after: float | None) -> None:
        # The message is built only if someone reads it: a rejection is on the
        # hot path of an outage, and most are counted, not printed.
        self.name = name
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.retry_after is None:
            return f"circuit {self.name!r} is open"
        return f"circuit {self.name!r} is open; next probe in {self.retry_after:.3g}s"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {"name": self.name, "retry_after": self.retry_after}))


class BulkheadFullError(RejectedError):
    """A bulkhead had no free permit within its ``max_wait``.

    Attributes:
        name: The bulkhead's (usually the dependency's) name.
    """

    def __init__(self, *, name: str, max_concurrent: int | None = None) -> None:
        self.name = name
        self.max_concurrent = max_concurrent

    def __str__(self) -> str:
        cap = "" if self.max_concurrent is None else f" ({self.max_concurrent} in use)"
        return f"bulkhead {self.name!r} is full{cap}"

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"name": self.name, "max_concurrent": self.max_concurrent}
        return (_rebuild, (type(self), state))


class LimitExceededError(BulkheadFullError):
    """An adaptive limit (:class:`~seawall.AdaptiveLimit`) was at its current limit.

    It is a :class:`BulkheadFullError`, so code that handles a full bulkhead
    (an HTTP layer answering 503) handles this one too; ``max_concurrent`` is
    the limit in force when the call was refused.

    Attributes:
        name: The limit's (usually the dependency's) name.
        limit: The limit in force: how many calls were in flight.
    """

    def __init__(self, *, name: str, limit: int | None = None) -> None:
        super().__init__(name=name, max_concurrent=limit)

    @property
    def limit(self) -> int | None:
        """The limit in force when the call was refused."""
        return self.max_concurrent

    def __str__(self) -> str:
        cap = "" if self.max_concurrent is None else f" ({self.max_concurrent} in flight)"
        return f"adaptive limit {self.name!r} reached{cap}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {"name": self.name, "limit": self.max_concurrent}))


class ThrottledError(RejectedError):
    """Client-side adaptive throttling (:class:`~seawall.Throttle`) shed the call.

    Attributes:
        name: The throttle's (usually the dependency's) name.
        probability: The rejection probability in force, in [0, 1).
    """

    def __init__(self, *, name: str, probability: float) -> None:
        self.name = name
        self.probability = probability

    def __str__(self) -> str:
        return f"throttle {self.name!r} shed the call (p={self.probability:.2f})"

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"name": self.name, "probability": self.probability}
        return (_rebuild, (type(self), state))


class LoadShedError(RejectedError):
    """The service's own load shedding refused a request before it ran.

    Attributes:
        name: The shedder's name.
        priority: The request's priority (0 is the most important).
        limit: The concurrency the priority was allowed when it was refused.
        retry_after: Seconds after which trying again makes sense.
    """

    def __init__(self, *, name: str, priority: int, limit: int, retry_after: float) -> None:
        self.name = name
        self.priority = priority
        self.limit = limit
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.name!r} shed a priority-{self.priority} request (limit {self.limit})"

    def __reduce__(self) -> tuple[Any, ...]:
        state = {
            "name": self.name,
            "priority": self.priority,
            "limit": self.limit,
            "retry_after": self.retry_after,
        }
        return (_rebuild, (type(self), state))


class DeadlineExceeded(SeawallError, TimeoutError):  # noqa: N818 - the contract's name
    """A timeout or the propagated deadline ran out.

    It is also a :class:`TimeoutError`, so code that already handles timeouts
    handles this one.

    Attributes:
        name: What timed out (a dependency or scope name), or ``None``.
        timeout: The budget in seconds that ran out, or ``None`` when unknown.
    """

    def __init__(self, *, name: str | None = None, timeout: float | None = None) -> None:
        self.name = name
        self.timeout = timeout
        what = "deadline" if name is None else f"{name!r}"
        budget = "" if timeout is None else f" after {timeout:.3g}s"
        super().__init__(f"{what} exceeded{budget}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {"name": self.name, "timeout": self.timeout}))


class RetryError(SeawallError):
    """Every attempt failed and the policy was built with ``reraise=False``.

    Attributes:
        last_exception: The error of the final attempt, or ``None`` when the
            last attempt returned a result the policy retries on.
        attempts: How many attempts were made.
    """

    def __init__(self, *, last_exception: BaseException | None, attempts: int) -> None:
        self.last_exception = last_exception
        self.attempts = attempts
        last = "a rejected result" if last_exception is None else repr(last_exception)
        super().__init__(f"gave up after {attempts} attempt(s); last: {last}")

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"last_exception": self.last_exception, "attempts": self.attempts}
        return (_rebuild, (type(self), state))


class DependencyUnavailable(SeawallError):  # noqa: N818 - the contract's name
    """A critical dependency failed after all of its policies.

    The HTTP layer answers it with 503, a ``Retry-After`` header when
    ``retry_after`` is known, and a JSON body naming the dependency.

    Attributes:
        name: The dependency's name.
        cause: The error that made it unavailable (also ``__cause__``).
        retry_after: Seconds after which trying again makes sense, from an open
            breaker or the downstream's own ``Retry-After``; ``None`` if unknown.
    """

    def __init__(
        self,
        *,
        name: str,
        cause: BaseException | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.name = name
        self.cause = cause
        self.retry_after = retry_after
        reason = "" if cause is None else f": {type(cause).__name__}"
        super().__init__(f"dependency {name!r} is unavailable{reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"name": self.name, "cause": self.cause, "retry_after": self.retry_after}
        return (_rebuild, (type(self), state))


class ConfigError(SeawallError, ValueError):
    """A policy was configured with a bad value.

    Raised at construction, never at call time. The message names every bad
    field and the value it got, e.g. ``"minimum_calls must be >= 1, got 0"``.
    """


def _rebuild(cls: type[SeawallError], state: dict[str, Any]) -> SeawallError:
    return cls(**state)


_new_exception = BaseException.__new__


def fast_circuit_open(name: str, retry_after: float | None) -> CircuitOpenError:
    """Build a :class:`CircuitOpenError` without running a Python ``__init__``.

    An open circuit rejects every call of an outage: this is its hot path, and
    skipping the keyword-only ``__init__`` frame makes the error a third as
    costly. The result is the same object (same type, attributes, message).
    """
    exc: CircuitOpenError = _new_exception(CircuitOpenError)
    exc.name = name
    exc.retry_after = retry_after
    return exc
