"""The policies an exporter reads at collection time, held by weak references.

Counters come from events; *current* values (a breaker's state, a bulkhead's
permits in use, an adaptive limit's limit and calls in flight, a throttle's
rejection probability, an outbox's depth and oldest age, a retry budget's
balance) are read from the live objects when a scrape or a metric reader asks
for them, the way resilience4j's gauges do. :class:`Tracker` holds those objects through weak
references, so tracking never keeps a policy alive: a dependency that is
dropped simply disappears from the next collection.

This module imports no third-party package; the Prometheus and OpenTelemetry
adapters share it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from seawall.adaptive import AdaptiveLimit
from seawall.breaker import CircuitBreaker
from seawall.bulkhead import Bulkhead, ThreadBulkhead
from seawall.core.budget import RetryBudget
from seawall.dependency import Dependency
from seawall.outbox import Outbox
from seawall.throttle import Throttle

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DURATION_BUCKETS",
    "BreakerReading",
    "BudgetReading",
    "BulkheadReading",
    "Counts",
    "DependencyReading",
    "DependencySource",
    "LimitReading",
    "OutboxReading",
    "Readings",
    "ThrottleReading",
    "Tracker",
    "event_names",
]

_log = logging.getLogger("seawall.integrations")

#: Upper bounds of the call-duration histograms, in seconds (``+Inf`` is implied):
#: from a cache hit to a call that waited out a long timeout.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_ALL_KINDS = frozenset({"breaker", "bulkhead", "limit", "throttle", "outbox", "budget"})


class Counts:
    """The values of one labelled counter, by label values; thread-safe."""

    __slots__ = ("lock", "values")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, key: tuple[str, ...]) -> None:
        values = self.values
        with self.lock:
            values[key] = values.get(key, 0) + 1

    def touch(self, key: tuple[str, ...]) -> None:
        """Create the series at 0 if missing, so its first increase is seen."""
        if key not in self.values:
            with self.lock:
                self.values.setdefault(key, 0)

    def items(self) -> list[tuple[tuple[str, ...], int]]:
        with self.lock:
            return list(self.values.items())


@runtime_checkable
class DependencySource(Protocol):
    """A set of dependencies read afresh at every collection (a ``Registry``)."""

    @property
    def dependencies(self) -> Mapping[str, Dependency]:
        """The dependencies by name."""
        ...


@dataclass(frozen=True, slots=True)
class DependencyReading:
    """A dependency, and the names its policies carry in their events.

    A policy's events carry the policy's own name (usually the dependency's);
    these are the names the exporters pre-create zero-valued series for. A
    dependency whose ``bulkhead`` is an adaptive limit has it as ``limit``,
    and no ``bulkhead``.
    """

    name: str
    criticality: str
    breaker: str | None
    bulkhead: str | None
    limit: str | None
    throttle: str | None
    outbox: str | None
    retry: str | None
    fallback_kind: str | None
    timeout: bool


@dataclass(frozen=True, slots=True)
class BreakerReading:
    """A circuit breaker's state and window at collection time."""

    name: str
    state: str
    shadow: bool
    calls: int
    failure_rate: float
    slow_call_rate: float
    failure_rate_threshold: float
    slow_call_rate_threshold: float


@dataclass(frozen=True, slots=True)
class BulkheadReading:
    """A bulkhead's permits at collection time."""

    name: str
    in_use: int
    max_concurrent: int
    waiting: int


@dataclass(frozen=True, slots=True)
class LimitReading:
    """An adaptive limit's current limit, calls in flight and bounds at collection time.

    ``min`` and ``max`` are ``None`` for an algorithm that does not say them
    (a custom :class:`~seawall.core.limit.LimitAlgorithm` with no ``config``).
    """

    name: str
    limit: int
    in_flight: int
    min: int | None
    max: int | None


@dataclass(frozen=True, slots=True)
class ThrottleReading:
    """A throttle's rejection probability and trailing window at collection time."""

    name: str
    probability: float
    requests: int
    accepts: int


@dataclass(frozen=True, slots=True)
class OutboxReading:
    """An outbox's backlog at collection time."""

    name: str
    depth: int
    oldest_age: float
    dead: int


@dataclass(frozen=True, slots=True)
class BudgetReading:
    """A retry budget's tokens at collection time, labelled by who uses it."""

    name: str
    balance: float
    capacity: float


@dataclass(slots=True)
class Readings:
    """Everything one collection read, each name at most once per kind."""

    dependencies: list[DependencyReading] = field(default_factory=list)
    breakers: list[BreakerReading] = field(default_factory=list)
    bulkheads: list[BulkheadReading] = field(default_factory=list)
    limits: list[LimitReading] = field(default_factory=list)
    throttles: list[ThrottleReading] = field(default_factory=list)
    outboxes: list[OutboxReading] = field(default_factory=list)
    budgets: list[BudgetReading] = field(default_factory=list)


def event_names(dep: Dependency) -> DependencyReading:
    """Return a dependency's criticality and the names its policies emit events under."""
    breaker = dep.breaker
    bulkhead = dep.bulkhead
    limit = bulkhead if isinstance(bulkhead, AdaptiveLimit) else None
    if limit is not None:
        bulkhead = None
    throttle = dep.throttle
    outbox = dep.outbox
    retry = dep.retry
    fallback = dep.config.fallback
    return DependencyReading(
        name=dep.name,
        criticality=dep.criticality.value,
        breaker=None if breaker is None else breaker.name,
        bulkhead=None if bulkhead is None else bulkhead.name,
        limit=None if limit is None else limit.name,
        throttle=None if throttle is None else throttle.name,
        outbox=None if outbox is None else outbox.name,
        retry=None if retry is None else retry.name,
        fallback_kind=None if fallback is None else fallback.kind,
        timeout=dep.config.timeout is not None,
    )


_Ref = tuple[str, "Callable[[], object | None]", str]


def _reference(obj: object) -> Callable[[], object | None]:
    try:
        return weakref.ref(obj)
    except TypeError:
        # Not weakly referenceable (a class with __slots__ and no __weakref__):
        # held strongly. Such objects (budgets, registries) live as long as the
        # process anyway.
        return lambda: obj


class Tracker:
    """The tracked objects of one exporter; thread-safe.

    :meth:`add` accepts dependencies, circuit breakers, bulkheads, adaptive
    limits, throttles, outboxes, anything with a ``dependencies`` mapping (a
    registry, read afresh at every collection, so dependencies added later are
    picked up), and iterables of these. :meth:`read` returns what each live one
    reads now. An object whose reading raises is skipped, and logged once.
    """

    __slots__ = ("_failed", "_lock", "_refs")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: tuple[_Ref, ...] = ()
        self._failed: set[tuple[str, str]] = set()

    def add(self, *objects: object) -> None:
        """Track ``objects`` (see the class docstring).

        Raises:
            TypeError: An object is none of the accepted kinds.
        """
        refs: list[_Ref] = []
        for obj in objects:
            refs.extend(_refs_of(obj))
        with self._lock:
            self._refs = (*self._refs, *refs)

    def add_budget(self, budget: RetryBudget, name: str) -> None:
        """Track a retry budget used outside a dependency, labelled ``name``."""
        given: object = budget  # typed, but callers may not be
        if not isinstance(given, RetryBudget):
            msg = f"budget must be a RetryBudget, got {given!r}"
            raise TypeError(msg)
        with self._lock:
            self._refs = (*self._refs, ("budget", _reference(budget), name))

    def __bool__(self) -> bool:
        return bool(self._refs)

    def read(self, kinds: frozenset[str] = _ALL_KINDS) -> Readings:
        """Read every live tracked object; forget the dead ones.

        Args:
            kinds: Read only these kinds of policy (``"breaker"``,
                ``"bulkhead"``, ``"limit"``, ``"throttle"``, ``"outbox"``,
                ``"budget"``); dependencies are always listed.
        """
        out = Readings()
        seen: set[int] = set()
        names: dict[str, set[str]] = {}
        dead = False
        for kind, ref, label in self._refs:
            obj = ref()
            if obj is None:
                dead = True
                continue
            if kind == "source":
                for dep in self._dependencies_of(obj):
                    self._read_dependency(dep, out, seen, names, kinds)
            elif kind == "dependency":
                self._read_dependency(obj, out, seen, names, kinds)  # type: ignore[arg-type]
            elif kind in kinds:
                self._read_one(kind, obj, label, out, seen=seen, names=names)
        if dead:
            with self._lock:
                self._refs = tuple(r for r in self._refs if r[1]() is not None)
        return out

    # -- reading ---------------------------------------------------------------

    def _dependencies_of(self, source: object) -> list[Dependency]:
        try:
            deps = source.dependencies  # type: ignore[attr-defined]
            values = deps.values() if isinstance(deps, Mapping) else deps
            return [d for d in values if isinstance(d, Dependency)]
        except Exception:
            self._report("registry", repr(source))
            return []

    def _read_dependency(
        self,
        dep: Dependency,
        out: Readings,
        seen: set[int],
        names: dict[str, set[str]],
        kinds: frozenset[str],
    ) -> None:
        if id(dep) in seen:
            return
        seen.add(id(dep))
        if not self._first("dependency", dep.name, names):
            return
        out.dependencies.append(event_names(dep))
        bulkhead = dep.bulkhead
        # An adaptive limit in the bulkhead's place is read as a limit: its
        # refusals are LimitRejected events, not BulkheadRejected ones.
        bulkhead_kind = "limit" if isinstance(bulkhead, AdaptiveLimit) else "bulkhead"
        for kind, part in (
            ("breaker", dep.breaker),
            (bulkhead_kind, bulkhead),
            ("throttle", dep.throttle),
            ("outbox", dep.outbox),
        ):
            if part is not None and kind in kinds:
                self._read_one(kind, part, part.name, out, seen=seen, names=names)
        retry = dep.config.retry
        budget = None if retry is None else retry.config.budget
        if isinstance(budget, RetryBudget) and "budget" in kinds:
            # A budget shared by several dependencies shows once under each:
            # "the balance this dependency's retries draw from".
            self._read_one("budget", budget, dep.name, out, seen=set(), names=names)

    def _read_one(
        self,
        kind: str,
        obj: object,
        label: str,
        out: Readings,
        *,
        seen: set[int],
        names: dict[str, set[str]],
    ) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if not self._first(kind, label, names):
            return
        try:
            if kind == "breaker":
                out.breakers.append(_read_breaker(obj))  # type: ignore[arg-type]
            elif kind == "bulkhead":
                out.bulkheads.append(_read_bulkhead(obj))  # type: ignore[arg-type]
            elif kind == "limit":
                out.limits.append(_read_limit(obj))  # type: ignore[arg-type]
            elif kind == "throttle":
                out.throttles.append(_read_throttle(obj))  # type: ignore[arg-type]
            elif kind == "outbox":
                out.outboxes.append(_read_outbox(obj))  # type: ignore[arg-type]
            else:
                out.budgets.append(_read_budget(obj, label))  # type: ignore[arg-type]
        except Exception:
            self._report(kind, label)

    def _first(self, kind: str, name: str, names: dict[str, set[str]]) -> bool:
        """Return whether ``name`` is new for ``kind`` in this collection."""
        taken = names.setdefault(kind, set())
        if name in taken:
            # Two different objects with one name would give duplicate series.
            key = (f"duplicate {kind}", name)
            if key not in self._failed:
                self._failed.add(key)
                _log.warning(
                    "two tracked %ss are named %r; metrics show the first only", kind, name
                )
            return False
        taken.add(name)
        return True

    def _report(self, kind: str, name: str) -> None:
        key = (kind, name)
        if key in self._failed:
            return
        self._failed.add(key)
        _log.exception("reading %s %r for metrics raised; it is skipped", kind, name)

    def __repr__(self) -> str:
        return f"<Tracker: {len(self._refs)} tracked>"


# The kind each named policy is tracked as.
_NAMED: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (Dependency, "dependency"),
    (CircuitBreaker, "breaker"),
    ((Bulkhead, ThreadBulkhead), "bulkhead"),
    (AdaptiveLimit, "limit"),
    (Throttle, "throttle"),
    (Outbox, "outbox"),
)


def _refs_of(obj: object) -> list[_Ref]:
    for types, kind in _NAMED:
        if isinstance(obj, types):
            name: str = obj.name  # type: ignore[attr-defined]
            return [(kind, _reference(obj), name)]
    if isinstance(obj, RetryBudget):
        msg = "a RetryBudget has no name: track its Dependency, or use track_budget(budget, name)"
        raise TypeError(msg)
    if isinstance(obj, DependencySource):
        return [("source", _reference(obj), "")]
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        return [ref for item in obj for ref in _refs_of(item)]
    msg = (
        "can track a Dependency, CircuitBreaker, Bulkhead, ThreadBulkhead, AdaptiveLimit, "
        "Throttle, Outbox, an object with a .dependencies mapping, or an iterable of these; "
        f"got {obj!r}"
    )
    raise TypeError(msg)


def _read_breaker(breaker: CircuitBreaker) -> BreakerReading:
    state = breaker.state  # applies any move time alone has made due
    metrics = breaker.metrics
    config = breaker.config
    return BreakerReading(
        name=breaker.name,
        state=state.value,
        shadow=breaker.shadow,
        calls=metrics.calls,
        failure_rate=metrics.failure_rate,
        slow_call_rate=metrics.slow_call_rate,
        failure_rate_threshold=config.failure_rate_threshold,
        slow_call_rate_threshold=config.slow_call_rate_threshold,
    )


def _read_bulkhead(bulkhead: Bulkhead | ThreadBulkhead) -> BulkheadReading:
    return BulkheadReading(
        name=bulkhead.name,
        in_use=bulkhead.in_use,
        max_concurrent=bulkhead.max_concurrent,
        waiting=bulkhead.waiting,
    )


def _read_limit(limit: AdaptiveLimit) -> LimitReading:
    # A custom algorithm need not have a config: its bounds are then unknown.
    config = getattr(limit.algorithm, "config", None)
    low = getattr(config, "min", None)
    high = getattr(config, "max", None)
    return LimitReading(
        name=limit.name,
        limit=limit.limit,
        in_flight=limit.in_flight,
        min=low if isinstance(low, int) else None,
        max=high if isinstance(high, int) else None,
    )


def _read_throttle(throttle: Throttle) -> ThrottleReading:
    # The probability first: reading it moves the window to now, so the counts
    # read next are those it was computed from.
    probability = throttle.probability
    return ThrottleReading(
        name=throttle.name,
        probability=probability,
        requests=throttle.requests,
        accepts=throttle.accepts,
    )


def _read_outbox(outbox: Outbox) -> OutboxReading:
    return OutboxReading(
        name=outbox.name, depth=outbox.depth, oldest_age=outbox.oldest_age, dead=outbox.dead
    )


def _read_budget(budget: RetryBudget, name: str) -> BudgetReading:
    return BudgetReading(name=name, balance=budget.balance, capacity=budget.capacity)
