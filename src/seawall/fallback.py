"""Fallbacks for DEGRADABLE dependencies, and how a degraded answer is made visible.

A degradable dependency may answer from a fallback when it is unavailable:

* :meth:`Fallback.value` -- a fixed default (the generic "popular items").
* :meth:`Fallback.call` -- a function of the error, sync or async.
* :meth:`Fallback.stale` -- the last good value for the same request, if it is
  not older than ``max_stale`` (prices a few minutes old beat no prices).

A degraded answer must never pass for a fresh one. Two ways to tell:

* ``await dep.call_result(...)`` returns a :class:`Result` whose ``degraded``
  says what was used and how old it is;
* every degraded answer is also noted in the ambient :class:`DegradationRecord`
  of the current request (see :func:`track_degradations`), which the ASGI
  integration turns into response headers.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from seawall import _validate
from seawall._clock import MONOTONIC, Clock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from datetime import timedelta

__all__ = [
    "AsyncStaleStore",
    "DegradationRecord",
    "Degraded",
    "Fallback",
    "FallbackKind",
    "MemoryStaleStore",
    "Result",
    "StaleStore",
    "current_degradations",
    "track_degradations",
]

T = TypeVar("T")

FallbackKind = Literal["value", "call", "stale"]
"""The kinds of fallback: "value", "call" or "stale"."""


@runtime_checkable
class StaleStore(Protocol):
    """Where the last good values of a ``Fallback.stale`` live.

    ``get`` returns the value and its age in seconds, or ``None``. A store
    chooses its own time source (a shared store uses wall-clock time, so ages
    agree across replicas). Stores must never raise for a missing key, and
    should bound their own size.
    """

    def get(self, key: str) -> tuple[Any, float] | None:
        """Return ``(value, age_seconds)`` for ``key``, or ``None``."""
        ...

    def put(self, key: str, value: Any) -> None:
        """Remember ``value`` as the latest good value for ``key``, aged 0."""
        ...


@runtime_checkable
class AsyncStaleStore(Protocol):
    """The asyncio variant of :class:`StaleStore` (for network-backed stores)."""

    async def aget(self, key: str) -> tuple[Any, float] | None:
        """Return ``(value, age_seconds)`` for ``key``, or ``None``."""
        ...

    async def aput(self, key: str, value: Any) -> None:
        """Remember ``value`` as the latest good value for ``key``, aged 0."""
        ...


class MemoryStaleStore:
    """An in-process :class:`StaleStore` (and :class:`AsyncStaleStore`), bounded in size.

    The least recently written key goes first once ``max_entries`` are held.
    Values are kept by reference: store immutable values, or copies.

    Args:
        max_entries: How many keys to keep (>= 1).
        clock: Time source for ages; defaults to the real monotonic clock.
    """

    __slots__ = ("_data", "_lock", "_max", "_now")

    def __init__(self, max_entries: int = 10_000, *, clock: Clock | None = None) -> None:
        _validate.fail_if(_validate.at_least("max_entries", max_entries, 1))
        self._max = max_entries
        self._now = (clock or MONOTONIC).monotonic
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[Any, float]] = OrderedDict()

    def get(self, key: str) -> tuple[Any, float] | None:
        """Return ``(value, age_seconds)`` for ``key``, or ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        value, stored_at = entry
        return value, max(self._now() - stored_at, 0.0)

    def put(self, key: str, value: Any) -> None:
        """Remember ``value`` for ``key``; evict the oldest key when full."""
        with self._lock:
            data = self._data
            data[key] = (value, self._now())
            data.move_to_end(key)
            if len(data) > self._max:
                data.popitem(last=False)

    async def aget(self, key: str) -> tuple[Any, float] | None:
        """Return ``(value, age_seconds)`` for ``key``, or ``None``."""
        return self.get(key)

    async def aput(self, key: str, value: Any) -> None:
        """Remember ``value`` for ``key``; evict the oldest key when full."""
        self.put(key, value)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    """How a DEGRADABLE dependency answers when it is unavailable.

    Build one with :meth:`value`, :meth:`call` or :meth:`stale`.
    """

    kind: FallbackKind
    default: Any = None
    fn: Callable[[BaseException], Any] | None = None
    max_stale: float = 0.0
    store: StaleStore | AsyncStaleStore | None = None
    key: Callable[..., str] | None = None
    remember: Callable[[Any], bool] | None = None

    @classmethod
    def value(cls, default: Any) -> Fallback:
        """Answer with ``default`` (shared between calls: make it immutable)."""
        return cls(kind="value", default=default)

    @classmethod
    def call(
        cls, fn: Callable[[BaseException], T] | Callable[[BaseException], Awaitable[T]]
    ) -> Fallback:
        """Answer with ``fn(error)``, awaited if it returns an awaitable.

        If ``fn`` raises, the failure is reported (a ``FallbackFailed`` event)
        and the dependency's own error surfaces as ``DependencyUnavailable``.
        """
        candidate: object = fn  # typed, but callers may not be
        if not callable(candidate):
            _validate.fail_if([f"fallback must be callable, got {candidate!r}"])
        return cls(kind="call", fn=fn)

    @classmethod
    def stale(
        cls,
        max_stale: float | timedelta,
        store: StaleStore | AsyncStaleStore | None = None,
        *,
        key: Callable[..., str] | None = None,
        remember: Callable[[Any], bool] | None = None,
    ) -> Fallback:
        """Answer with the last good value for the same arguments, up to ``max_stale`` old.

        Every successful call stores its result (those ``remember`` keeps);
        when the dependency is unavailable, the stored value is served with
        its age if it is not older than ``max_stale`` seconds. Older or
        missing: the failure surfaces.

        Args:
            max_stale: The oldest value worth serving, in seconds (> 0).
            store: Where values live; default a private :class:`MemoryStaleStore`.
                Use a shared store (Redis) to serve what another replica fetched.
            key: Builds the cache key from the call's arguments. The default
                is the function's qualified name and the ``repr`` of the
                arguments, which suits ids and strings; pass your own when an
                argument is a client or a session.
            remember: Which results are worth storing: a predicate given
                each one; default every one. Keep out the answers nobody will
                want as a fallback -- a "not found" for an id a client made
                up -- or a flood of them evicts (or, in a store without a
                bound, outgrows) the ones that will be. If it raises, the
                result is not stored and the call still answers.
        """
        seconds = _validate.seconds(max_stale)
        errors = _validate.duration("max_stale", seconds, allow_zero=False)
        given: object = store
        if given is not None and not isinstance(given, (StaleStore, AsyncStaleStore)):
            errors.append(f"store must be a StaleStore or AsyncStaleStore, got {given!r}")
        wanted: object = remember
        if wanted is not None and not callable(wanted):
            errors.append(f"remember must be callable, got {wanted!r}")
        _validate.fail_if(errors)
        # `store or ...` would replace an empty store: stores have a length.
        chosen = MemoryStaleStore() if store is None else store
        return cls(kind="stale", max_stale=seconds, store=chosen, key=key, remember=remember)


def default_key(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Build the default stale-cache key: the function's name and its arguments' reprs."""
    # A callable object has no __qualname__ of its own: its class names it.
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if kwargs:
        return f"{name}{args!r}{sorted(kwargs.items())!r}"
    return f"{name}{args!r}"


@dataclass(frozen=True, slots=True)
class Degraded:
    """What a degraded answer was made of.

    Attributes:
        dependency: The dependency that answered from its fallback.
        kind: ``"value"``, ``"call"`` or ``"stale"``.
        age: For stale values, their age in seconds; otherwise ``None``.
        reason: The type name of the error that made it degrade.
    """

    dependency: str
    kind: FallbackKind
    age: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """A dependency's answer, and whether it came from a fallback.

    Attributes:
        value: The answer.
        degraded: ``None`` for a fresh answer; otherwise what the fallback was.
    """

    value: T
    degraded: Degraded | None = None


@dataclass(slots=True)
class DegradationRecord:
    """The degraded answers given while serving one request (thread- and task-safe)."""

    items: list[Degraded] = field(default_factory=list)

    def add(self, item: Degraded) -> None:
        """Note one degraded answer (``list.append`` is atomic: no lock needed)."""
        self.items.append(item)

    @property
    def dependencies(self) -> list[str]:
        """The names of the dependencies that degraded, each once, in order."""
        return list(dict.fromkeys(d.dependency for d in self.items))

    @property
    def max_age(self) -> float | None:
        """The age of the oldest stale value served, or ``None`` if none was."""
        ages = [d.age for d in self.items if d.age is not None]
        return max(ages) if ages else None

    def __bool__(self) -> bool:
        return bool(self.items)


_RECORD: contextvars.ContextVar[DegradationRecord | None] = contextvars.ContextVar(
    "seawall.degradations", default=None
)


@contextlib.contextmanager
def track_degradations() -> Iterator[DegradationRecord]:
    """Collect the degraded answers given inside this block (and its tasks).

    The record is shared with tasks created inside the block (they inherit the
    context), so a request that gathers several calls sees all of them::

        with track_degradations() as record:
            response = await handler()
        if record:
            response.headers["Degraded"] = ", ".join(record.dependencies)
    """
    record = DegradationRecord()
    token = _RECORD.set(record)
    try:
        yield record
    finally:
        _RECORD.reset(token)


def current_degradations() -> DegradationRecord | None:
    """Return the record of the innermost :func:`track_degradations` block, if any."""
    return _RECORD.get()
