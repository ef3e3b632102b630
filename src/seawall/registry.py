"""Registry: the dependencies of a service, built in code or from configuration.

A service configures its dependencies in one place, the way resilience4j
configures its instances: shared ``defaults``, optional named ``configs`` a
dependency can take as its ``base``, and per-dependency overrides, deep-merged
in that order. A policy table set to ``false`` switches a default policy off for
one dependency. Every key is checked: a misspelt one is an error naming its path,
not a silently ignored setting.

.. code-block:: toml

    request_deadline = 25.0          # the service's own budget per request

    [defaults]
    timeout = 5.0
    retry = { attempts = 3, backoff = { kind = "exponential", initial = 0.1, maximum = 2.0 } }
    breaker = { failure_rate_threshold = 0.5, window = { kind = "count", size = 100 } }

    [configs.external]               # a named base for third-party APIs
    timeout = 8.0
    bulkhead = { max_concurrent = 20 }

    [dependencies.payment]
    base = "external"
    criticality = "critical"

    [dependencies.recommendations]
    criticality = "degradable"
    fallback = { kind = "value", value = [] }
    retry = false

    [dependencies.search]            # an adaptive limit instead of a bulkhead
    limit = { algorithm = "gradient2", initial = 20, min = 2, max = 100 }
    throttle = { k = 2.0, window = 30 }

``limit`` (an :class:`~seawall.adaptive.AdaptiveLimit`) takes the place of a
``bulkhead``: a dependency has one or the other, so a ``limit`` under a
default ``bulkhead`` needs ``bulkhead = false`` beside it. ``throttle`` is a
:class:`~seawall.throttle.Throttle`.

Each kind of table says what it needs: a ``bulkhead`` its ``max_concurrent``,
a ``backoff`` the settings of its ``kind`` (``exponential``, the default:
``initial`` and ``maximum``; ``linear``: ``initial``, ``step`` and ``maximum``;
``constant``: ``delay``) and no other kind's, a ``fallback`` its ``value`` or
its ``max_stale``. ``defaults`` and every table of ``configs`` are checked for
unknown keys too, whether or not a dependency uses them.

The registry also checks the *timeout hierarchy*: a dependency whose worst case
-- every attempt timing out, with the longest backoff between them -- cannot
fit in the service's ``request_deadline`` is reported when it is loaded, naming
both numbers. Such a dependency would only ever fail by the request's deadline
rather than its own timeout, and its retries would be wasted. So is a retry's
``max_elapsed`` or a bulkhead's ``max_wait`` longer than the request deadline:
no request lives long enough for either to act.

.. versionadded:: 0.1
"""

from __future__ import annotations

import copy
import logging
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seawall import _validate
from seawall.adaptive import AdaptiveLimit
from seawall.breaker import CircuitBreaker
from seawall.bulkhead import Bulkhead, ThreadBulkhead
from seawall.core.backoff import Backoff
from seawall.core.budget import RetryBudget
from seawall.core.limit import SampleWindowConfig
from seawall.core.window import CountWindow, TimeWindow
from seawall.dependency import Criticality, Dependency
from seawall.errors import ConfigError
from seawall.fallback import Fallback, MemoryStaleStore
from seawall.retry import Retry
from seawall.throttle import Throttle

if TYPE_CHECKING:
    from seawall._clock import Clock
    from seawall.events import Listeners
    from seawall.outbox import Outbox

__all__ = ["BudgetProblem", "Registry"]

_log = logging.getLogger("seawall.registry")

_TOP_KEYS = {"request_deadline", "defaults", "configs", "dependencies"}
_DEP_KEYS = {
    "base",
    "criticality",
    "timeout",
    "retry",
    "breaker",
    "bulkhead",
    "limit",
    "throttle",
    "fallback",
}
_RETRY_KEYS = {"attempts", "backoff", "max_elapsed", "respect_retry_after", "budget"}
_BACKOFF_KEYS = {"kind", "initial", "maximum", "step", "multiplier", "jitter", "delay"}
#: Each backoff kind's settings, and those of them it cannot do without.
_BACKOFF_KINDS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "constant": ({"kind", "delay", "initial"}, ("delay",)),
    "linear": ({"kind", "initial", "step", "maximum"}, ("initial", "step", "maximum")),
    "exponential": (
        {"kind", "initial", "maximum", "multiplier", "jitter"},
        ("initial", "maximum"),
    ),
}
_BUDGET_KEYS = {"ratio", "min_per_second"}
_BREAKER_KEYS = {
    "failure_rate_threshold",
    "slow_call_rate_threshold",
    "slow_call_duration",
    "window",
    "minimum_calls",
    "open_duration",
    "half_open_calls",
    "half_open_max_wait",
    "shadow",
}
_WINDOW_KEYS = {"kind", "size", "seconds", "buckets"}
_BULKHEAD_KEYS = {"max_concurrent", "max_wait", "kind"}
_FALLBACK_KEYS = {"kind", "value", "max_stale"}
#: Each fallback kind's one setting, which it needs.
_FALLBACK_KINDS = {"value": ("value",), "stale": ("max_stale",)}
_LIMIT_KEYS = {
    "algorithm",
    "initial",
    "min",
    "max",
    "smoothing",
    "tolerance",
    "long_window",
    "queue_size",
    "probe_interval",
    "backoff_ratio",
    "timeout",
    "window",
}
_LIMIT_WINDOW_KEYS = {"min_time", "max_time", "min_samples", "min_rtt"}
_THROTTLE_KEYS = {"k", "window", "buckets", "max_probability", "min_requests"}


@dataclass(frozen=True, slots=True)
class BudgetProblem:
    """A dependency whose worst case cannot fit in the request deadline.

    Attributes:
        dependency: Its name.
        worst_case: attempts x timeout + the longest backoff between attempts, in seconds.
        request_deadline: The service's request deadline, in seconds.
        attempts: Total tries.
        timeout: Seconds per attempt.
        backoff: The longest total of the delays between attempts, in seconds.
        max_elapsed: The retry's ``max_elapsed`` when it is what bounds the
            worst case (then ``worst_case`` is it plus one attempt), else ``None``.
        setting: For a setting that can never act within the deadline
            (``"retry.max_elapsed"`` or ``"bulkhead.max_wait"`` longer than the
            request deadline), its name; ``worst_case`` is then its value.
            ``None`` for a worst case that does not fit.
    """

    dependency: str
    worst_case: float
    request_deadline: float
    attempts: int
    timeout: float
    backoff: float
    max_elapsed: float | None = None
    setting: str | None = None

    def __str__(self) -> str:
        if self.setting is not None:
            return (
                f"dependencies.{self.dependency}.{self.setting}: {self.worst_case:.3g}s is "
                f"longer than the request deadline of {self.request_deadline:.3g}s; no request "
                "waits that long, so the setting can never act (lower it, or leave it out)"
            )
        if self.max_elapsed is not None:
            how = (
                f"retries until max_elapsed {self.max_elapsed:.3g}s, then one more "
                f"{self.timeout:.3g}s attempt"
            )
        else:
            how = (
                f"{self.attempts} attempt(s) x {self.timeout:.3g}s timeout + "
                f"{self.backoff:.3g}s backoff"
            )
        return (
            f"dependency {self.dependency!r} needs up to {self.worst_case:.3g}s "
            f"({how}), more than the request deadline of {self.request_deadline:.3g}s"
        )


class Registry:
    """The dependencies of a service, by name.

    Args:
        dependencies: The dependencies to hold (names must be unique).
        request_deadline: The service's own deadline per request, in seconds,
            against which every dependency's worst case is checked.
        strict: Raise :class:`~seawall.errors.ConfigError` for a dependency
            that cannot fit in ``request_deadline`` (the default); otherwise log
            a warning and keep the problem in :attr:`problems`.

    Raises:
        ConfigError: Duplicate names, a bad deadline, or (``strict``) a budget problem.
    """

    __slots__ = ("_deps", "problems", "request_deadline")

    def __init__(
        self,
        dependencies: Iterable[Dependency] = (),
        *,
        request_deadline: float | None = None,
        strict: bool = True,
    ) -> None:
        if request_deadline is not None:
            _validate.fail_if(
                _validate.duration("request_deadline", request_deadline, allow_zero=False)
            )
        self.request_deadline = request_deadline
        self._deps: dict[str, Dependency] = {}
        for index, dep in enumerate(dependencies):
            item: object = dep  # typed, but callers may not be
            if not isinstance(item, Dependency):
                wrong = f"dependencies[{index}]: must be a Dependency, got {item!r:.60}"
                _validate.fail_if([wrong])
            if dep.name in self._deps:
                _validate.fail_if([f"dependency {dep.name!r} is registered twice"])
            self._deps[dep.name] = dep
        #: Dependencies whose worst case exceeds the request deadline.
        self.problems: list[BudgetProblem] = self.check_budgets()
        if self.problems:
            if strict:
                raise ConfigError("; ".join(str(p) for p in self.problems))
            for problem in self.problems:
                _log.warning("%s", problem)

    @property
    def dependencies(self) -> Mapping[str, Dependency]:
        """The dependencies, by name (read-only)."""
        return dict(self._deps)

    def __getitem__(self, name: str) -> Dependency:
        return self._deps[name]

    def __contains__(self, name: object) -> bool:
        return name in self._deps

    def __iter__(self) -> Iterator[Dependency]:
        return iter(self._deps.values())

    def __len__(self) -> int:
        return len(self._deps)

    def check_budgets(self) -> list[BudgetProblem]:
        """Return the dependencies whose worst case exceeds :attr:`request_deadline`.

        BACKGROUND dependencies are left out: their calls run in the outbox's
        worker, never inside a request. The backoff counted is the schedule's;
        a downstream's ``Retry-After`` may stretch a delay up to the backoff's
        maximum, and that is bounded at run time instead: a retry whose next
        delay would end past the ambient deadline gives up at once.

        Also reported: a retry's ``max_elapsed`` or a bulkhead's ``max_wait``
        longer than the request deadline (:attr:`BudgetProblem.setting`). No
        request lives that long, so the setting never acts, and a reader of the
        configuration would believe it does.
        """
        limit = self.request_deadline
        if limit is None:
            return []
        problems = []
        for dep in self._deps.values():
            if dep.config.criticality is Criticality.BACKGROUND:
                continue  # nothing a request waits for
            problems += _settings_past(dep, limit)
            timeout = dep.config.timeout
            if timeout is None:
                continue  # nothing to add up
            retry = dep.config.retry
            attempts = 1 if retry is None else retry.config.attempts
            backoff = 0.0 if retry is None else retry.config.backoff.longest(attempts - 1)
            worst = attempts * timeout + backoff
            # No retry starts after max_elapsed: the last one ends a timeout later.
            elapsed = None if retry is None else retry.config.max_elapsed
            bound = None
            if elapsed is not None and attempts > 1 and elapsed + timeout < worst:
                worst, bound = elapsed + timeout, elapsed
            if worst > limit:
                problems.append(
                    BudgetProblem(dep.name, worst, limit, attempts, timeout, backoff, bound)
                )
        return problems

    # -- configuration -------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | Path, **kwargs: Any) -> Registry:
        """Load a registry from a TOML file; see :meth:`from_mapping` for the keywords."""
        with Path(path).open("rb") as f:
            return cls.from_mapping(tomllib.load(f), **kwargs)

    @classmethod
    def from_mapping(
        cls,
        config: Mapping[str, Any],
        *,
        fallbacks: Mapping[str, Fallback] | None = None,
        outboxes: Mapping[str, Outbox] | None = None,
        strict: bool = True,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> Registry:
        """Build a registry from a mapping shaped like the module docstring's TOML.

        Args:
            config: ``request_deadline``, ``defaults``, ``configs`` and
                ``dependencies`` (each optional).
            fallbacks: Fallbacks given in code, by dependency name (for
                ``Fallback.call`` or a shared stale store); they win over a
                ``fallback`` table in the configuration.
            outboxes: The outboxes of BACKGROUND dependencies, by name.
            strict: See :class:`Registry`.
            clock: Passed to every policy built (tests use a FakeClock).
            listeners: Passed to every policy built.

        Raises:
            ConfigError: Every problem found, each prefixed with its path in
                the configuration (``dependencies.payment.retry.attempts: ...``).
        """
        errors: list[str] = []
        _unknown("", config, _TOP_KEYS, errors)
        defaults = _table(config, "defaults", "", errors)
        configs = _table(config, "configs", "", errors)
        deps = _table(config, "dependencies", "", errors)
        # Checked whether or not a dependency uses them: a misspelt key in a
        # shared layer is as silent as one in a dependency's own table.
        _shape("defaults", defaults, errors, allow_base=False)
        for key, layer in configs.items():
            if isinstance(layer, Mapping):
                _shape(f"configs.{key}", layer, errors, allow_base=False)
            else:
                errors.append(f"configs.{key}: must be a table, got {layer!r:.60}")
        _validate.fail_if(errors)
        build = _Builder(fallbacks or {}, outboxes or {}, clock, listeners)
        built = []
        for name, own in deps.items():
            path = f"dependencies.{name}"
            if not isinstance(own, Mapping):
                errors.append(f"{path}: must be a table, got {own!r}")
                continue
            merged = _merge(defaults, _base(own, configs, path, errors), own)
            try:
                built.append(build.dependency(name, merged, path))
            except ConfigError as exc:
                errors.append(str(exc))
        _validate.fail_if(errors)
        return cls(built, request_deadline=config.get("request_deadline"), strict=strict)

    def __repr__(self) -> str:
        return f"<Registry {list(self._deps)!r} request_deadline={self.request_deadline!r}>"


# -- building policies from tables ---------------------------------------------------


class _Builder:
    def __init__(
        self,
        fallbacks: Mapping[str, Fallback],
        outboxes: Mapping[str, Outbox],
        clock: Clock | None,
        listeners: Listeners | None,
    ) -> None:
        self.fallbacks = fallbacks
        self.outboxes = outboxes
        self.clock = clock
        self.listeners = listeners

    def dependency(self, name: str, table: Mapping[str, Any], path: str) -> Dependency:
        errors: list[str] = []
        _unknown(path, table, _DEP_KEYS, errors)
        _validate.fail_if(errors)
        criticality = _criticality(table.get("criticality", "critical"), path)
        kwargs: dict[str, Any] = {}
        parts: list[tuple[str, Callable[[str, Mapping[str, Any], str], Any]]] = [
            ("retry", self.retry),
            ("breaker", self.breaker),
            ("bulkhead", self.bulkhead),
            ("limit", self.limit),
            ("throttle", self.throttle),
        ]
        for key, make in parts:
            sub = table.get(key)
            if sub is None or sub is False:
                continue
            if not isinstance(sub, Mapping):
                errors.append(f"{path}.{key}: must be a table or false, got {sub!r}")
                continue
            try:
                kwargs[key] = make(name, sub, f"{path}.{key}")
            except ConfigError as exc:
                errors.append(_prefix(f"{path}.{key}", exc))
        if "limit" in kwargs:
            if "bulkhead" in kwargs:
                errors.append(
                    f"{path}: bulkhead and limit both set; a dependency has one or the other"
                    " (set bulkhead = false beside a limit)"
                )
            else:
                kwargs["bulkhead"] = kwargs.pop("limit")
        fallback = self.fallbacks.get(name)
        if fallback is None and table.get("fallback") not in (None, False):
            try:
                fallback = self.fallback(table["fallback"], f"{path}.fallback")
            except ConfigError as exc:
                errors.append(_prefix(f"{path}.fallback", exc))
        _validate.fail_if(errors)
        try:
            return Dependency(
                name,
                criticality=criticality,
                timeout=table.get("timeout"),
                fallback=fallback,
                outbox=self.outboxes.get(name),
                clock=self.clock,
                listeners=self.listeners,
                **kwargs,
            )
        except ConfigError as exc:
            raise ConfigError(_prefix(path, exc)) from None

    def retry(self, name: str, table: Mapping[str, Any], path: str) -> Retry:
        errors: list[str] = []
        _unknown(path, table, _RETRY_KEYS, errors)
        _validate.fail_if(errors)
        options = {k: v for k, v in table.items() if k not in {"backoff", "budget"}}
        if "backoff" in table:
            options["backoff"] = _backoff(table["backoff"], f"{path}.backoff")
        if "budget" in table:
            budget = table["budget"]
            if not isinstance(budget, Mapping):
                raise ConfigError(f"budget: must be a table, got {budget!r}")
            _unknown(f"{path}.budget", budget, _BUDGET_KEYS, errors)
            _validate.fail_if(errors)
            options["budget"] = RetryBudget(**budget, clock=self.clock)
        return Retry(name=name, clock=self.clock, listeners=self.listeners, **options)

    def breaker(self, name: str, table: Mapping[str, Any], path: str) -> CircuitBreaker:
        errors: list[str] = []
        _unknown(path, table, _BREAKER_KEYS, errors)
        _validate.fail_if(errors)
        options = dict(table)
        if "window" in options:
            options["window"] = _window(options["window"], f"{path}.window")
        return CircuitBreaker(name, clock=self.clock, listeners=self.listeners, **options)

    def bulkhead(self, name: str, table: Mapping[str, Any], path: str) -> Bulkhead | ThreadBulkhead:
        errors: list[str] = []
        _unknown(path, table, _BULKHEAD_KEYS, errors)
        _validate.fail_if(errors)
        _require(path, table, ("max_concurrent",), errors)
        _validate.fail_if(errors)
        options = dict(table)
        kind = options.pop("kind", "async")
        if kind not in ("async", "thread"):
            raise ConfigError(f"kind must be 'async' or 'thread', got {kind!r}")
        cls: type[Bulkhead | ThreadBulkhead] = Bulkhead if kind == "async" else ThreadBulkhead
        return cls(name, clock=self.clock, listeners=self.listeners, **options)

    def limit(self, name: str, table: Mapping[str, Any], path: str) -> AdaptiveLimit:
        errors: list[str] = []
        _unknown(path, table, _LIMIT_KEYS, errors)
        _validate.fail_if(errors)
        options = dict(table)
        if "window" in options:
            window = options["window"]
            if not isinstance(window, Mapping):
                raise ConfigError(f"window: must be a table, got {window!r}")
            _unknown(f"{path}.window", window, _LIMIT_WINDOW_KEYS, errors)
            _validate.fail_if(errors)
            try:
                options["window"] = SampleWindowConfig(**window)
            except ConfigError as exc:
                raise ConfigError(_prefix("window", exc)) from None
        return AdaptiveLimit(name, clock=self.clock, listeners=self.listeners, **options)

    def throttle(self, name: str, table: Mapping[str, Any], path: str) -> Throttle:
        errors: list[str] = []
        _unknown(path, table, _THROTTLE_KEYS, errors)
        _validate.fail_if(errors)
        return Throttle(name, clock=self.clock, listeners=self.listeners, **table)

    def fallback(self, table: object, path: str) -> Fallback:
        if not isinstance(table, Mapping):
            raise ConfigError(f"must be a table, got {table!r}")
        errors: list[str] = []
        _unknown(path, table, _FALLBACK_KEYS, errors)
        _validate.fail_if(errors)
        kind = table.get("kind")
        if kind in _FALLBACK_KINDS:
            _only(path, table, kind, _FALLBACK_KINDS[kind], errors)
            _require(path, table, _FALLBACK_KINDS[kind], errors, kind=kind)
            _validate.fail_if(errors)
        if kind == "value":
            # Each dependency gets its own copy: a shared mutable default would
            # let one caller's change show in every later degraded answer.
            return Fallback.value(copy.deepcopy(table.get("value")))
        if kind == "stale":
            # Ages are read on the registry's clock, like every other policy's time.
            store = MemoryStaleStore(clock=self.clock)
            return Fallback.stale(table["max_stale"], store=store)
        raise ConfigError(
            f"kind must be 'value' or 'stale' (pass Fallback.call in code), got {kind!r}"
        )


def _backoff(table: object, path: str) -> Backoff:
    if not isinstance(table, Mapping):
        raise ConfigError(f"backoff: must be a table, got {table!r}")
    errors: list[str] = []
    _unknown(path, table, _BACKOFF_KEYS, errors)
    _validate.fail_if(errors)
    options = dict(table)
    kind = options.pop("kind", "exponential")
    if kind not in _BACKOFF_KINDS:
        raise ConfigError(f"backoff.kind must be constant, linear or exponential, got {kind!r}")
    allowed, required = _BACKOFF_KINDS[kind]
    _only(path, table, kind, allowed, errors)
    if kind == "constant" and "initial" in options:
        options.setdefault("delay", options.pop("initial"))  # the older spelling
    _require(path, options, required, errors, kind=kind, implied="kind" not in table)
    _validate.fail_if(errors)
    if kind == "constant":
        return Backoff.constant(options["delay"])
    if kind == "linear":
        return Backoff.linear(**options)
    return Backoff.exponential(**options)


def _window(table: object, path: str) -> CountWindow | TimeWindow:
    if not isinstance(table, Mapping):
        raise ConfigError(f"window: must be a table, got {table!r}")
    errors: list[str] = []
    _unknown(path, table, _WINDOW_KEYS, errors)
    _validate.fail_if(errors)
    options = dict(table)
    kind = options.pop("kind", "count")
    if kind == "count":
        return CountWindow(options.get("size", 100))
    if kind == "time":
        return TimeWindow(options.get("seconds", 60.0), options.get("buckets", 10))
    raise ConfigError(f"window.kind must be 'count' or 'time', got {kind!r}")


def _criticality(value: object, path: str) -> Criticality:
    if isinstance(value, Criticality):
        return value
    try:
        return Criticality(str(value).lower())
    except ValueError:
        choices = ", ".join(c.value for c in Criticality)
        raise ConfigError(f"{path}.criticality: must be one of {choices}, got {value!r}") from None


def _base(
    own: Mapping[str, Any], configs: Mapping[str, Any], path: str, errors: list[str]
) -> Mapping[str, Any]:
    base = own.get("base")
    if base is None:
        return {}
    found = configs.get(base)
    if not isinstance(found, Mapping):
        errors.append(f"{path}.base: no config named {base!r} (configs: {sorted(configs)})")
        return {}
    return found


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables: later layers win key by key; `false` replaces a table."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            old = merged.get(key)
            if isinstance(old, Mapping) and isinstance(value, Mapping):
                merged[key] = _merge(old, value)
            else:
                merged[key] = value
    merged.pop("base", None)
    return merged


def _table(config: Mapping[str, Any], key: str, path: str, errors: list[str]) -> Mapping[str, Any]:
    value = config.get(key, {})
    if not isinstance(value, Mapping):
        errors.append(f"{path}{key}: must be a table, got {value!r}")
        return {}
    return value


def _unknown(path: str, table: Mapping[str, Any], allowed: set[str], errors: list[str]) -> None:
    prefix = f"{path}." if path else ""
    errors.extend(
        f"{prefix}{key}: unknown key (expected one of {sorted(allowed)})"
        for key in table
        if key not in allowed
    )


#: The tables a policy key holds, and the tables nested in them.
_SHAPES: dict[str, tuple[set[str], dict[str, set[str]]]] = {
    "retry": (_RETRY_KEYS, {"backoff": _BACKOFF_KEYS, "budget": _BUDGET_KEYS}),
    "breaker": (_BREAKER_KEYS, {"window": _WINDOW_KEYS}),
    "bulkhead": (_BULKHEAD_KEYS, {}),
    "limit": (_LIMIT_KEYS, {"window": _LIMIT_WINDOW_KEYS}),
    "throttle": (_THROTTLE_KEYS, {}),
    "fallback": (_FALLBACK_KEYS, {}),
}


def _shape(path: str, layer: Mapping[str, Any], errors: list[str], *, allow_base: bool) -> None:
    """Check a layer's keys, and its tables' keys, without building anything.

    ``defaults`` and ``configs`` hold parts of dependencies (a bulkhead's
    ``max_wait`` without its size), so only their keys can be checked until a
    dependency merges them; the values are checked then, with the rest.
    """
    _unknown(path, layer, _DEP_KEYS if allow_base else _DEP_KEYS - {"base"}, errors)
    for key, (allowed, nested) in _SHAPES.items():
        sub = layer.get(key)
        if sub is None or sub is False:
            continue
        if not isinstance(sub, Mapping):
            errors.append(f"{path}.{key}: must be a table or false, got {sub!r:.60}")
            continue
        _unknown(f"{path}.{key}", sub, allowed, errors)
        for inner, inner_allowed in nested.items():
            table = sub.get(inner)
            if isinstance(table, Mapping):
                _unknown(f"{path}.{key}.{inner}", table, inner_allowed, errors)


def _require(
    path: str,
    table: Mapping[str, Any],
    names: Iterable[str],
    errors: list[str],
    *,
    kind: str | None = None,
    implied: bool = False,
) -> None:
    """Report each of ``names`` missing from ``table``, by its path.

    ``kind`` is the kind that needs them; ``implied`` when the table did not
    say it and got the default, which the message then says.
    """
    which = "" if kind is None else f" for kind '{kind}'"
    if implied:
        which += " (the default)"
    errors.extend(f"{path}.{name}: required{which}" for name in names if name not in table)


def _only(
    path: str, table: Mapping[str, Any], kind: str, allowed: Iterable[str], errors: list[str]
) -> None:
    """Report each key of ``table`` that another kind takes but ``kind`` does not."""
    keep = {"kind", *allowed}
    errors.extend(
        f"{path}.{key}: not a setting of kind '{kind}' (its settings: {sorted(keep - {'kind'})})"
        for key in table
        if key not in keep
    )


def _settings_past(dep: Dependency, limit: float) -> list[BudgetProblem]:
    """Return the ``max_elapsed`` or bulkhead ``max_wait`` no request lives to see."""
    found = []
    retry, bulkhead = dep.config.retry, dep.config.bulkhead
    elapsed = None if retry is None else retry.config.max_elapsed
    wait = bulkhead.config.max_wait if isinstance(bulkhead, (Bulkhead, ThreadBulkhead)) else None
    attempts = 1 if retry is None else retry.config.attempts
    timeout = dep.config.timeout or 0.0
    for setting, value in (("retry.max_elapsed", elapsed), ("bulkhead.max_wait", wait)):
        if value is not None and value > limit:
            found.append(
                BudgetProblem(dep.name, value, limit, attempts, timeout, 0.0, setting=setting)
            )
    return found


def _prefix(path: str, exc: ConfigError) -> str:
    return "; ".join(
        part if part.startswith(path) else f"{path}: {part}" for part in str(exc).split("; ")
    )
