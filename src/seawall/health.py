r"""Liveness, readiness and startup checks, framework-free.

Three questions an orchestrator asks a process, and how :class:`Health` answers:

* **Liveness** -- "is the process stuck?" -- checks no dependency at all: if the
  event loop runs the handler, the process is alive. A database outage must
  never restart every replica of a service.
* **Readiness** -- "should traffic come here?" -- runs the registered
  :class:`Check`\ s concurrently, each bounded by its own timeout, and reads the
  circuit breakers of the service's dependencies. Only *required* checks and
  the breakers of CRITICAL dependencies decide the status: a DEGRADABLE
  dependency that is down is reported, and the instance stays in rotation
  (it can still answer, from its fallback).
* **Startup** -- "has it finished starting?" -- the readiness checks, until
  they pass once; after that it stays passed.

A probe storm (every load balancer asking every second, plus a retrying
orchestrator) must not become a storm on the database: check results are
cached for ``cache_ttl`` seconds, and callers that arrive while an evaluation
is running share it instead of starting their own.

A hung dependency never makes a probe hang: a check that overruns its timeout
is reported as ``"timeout"`` at once, and its call is cancelled in the
background (see :class:`Health` for what happens to a call that will not die).

Reports never contain exception text, host names or connection strings unless
``expose_details=True`` is asked for explicitly: a health endpoint is often
reachable by more people than the logs are.

::

    health = Health(
        [Check("postgres", sqlalchemy_check(engine), timeout=0.5),
         Check("cache", redis_check(redis), timeout=0.3, required=False)],
        dependencies=registry,
    )
    report = await health.readiness()
    status = 200 if report.ok else 503
    body = report.to_dict()

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.core.breaker_state import FORCED_OPEN, OPEN, State
from seawall.dependency import Criticality, Dependency

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from datetime import timedelta

__all__ = [
    "DEFAULT_CACHE_TTL",
    "DEFAULT_CHECK_TIMEOUT",
    "BreakerReading",
    "Check",
    "CheckResult",
    "CheckStatus",
    "Health",
    "HealthReport",
]

DEFAULT_CHECK_TIMEOUT = 1.0
"""Seconds a check may take before it counts as ``"timeout"``."""

DEFAULT_CACHE_TTL = 2.0
"""Seconds a readiness evaluation is reused before the checks run again."""

CheckStatus = Literal["ok", "failed", "timeout"]
"""The outcome of one check."""


@dataclass(frozen=True, slots=True, init=False)
class Check:
    """One readiness check: a named async callable with its own timeout.

    ``fn()`` is awaited with no arguments. Returning ``None`` or ``True`` (or
    any value but ``False``) means ok; returning ``False`` or raising means
    failed; overrunning ``timeout`` means ``"timeout"`` (so does raising a
    :class:`TimeoutError`). A plain function may be given if it never blocks.

    Args:
        name: The check's name in reports (unique within a :class:`Health`).
        fn: The check itself, e.g. from :mod:`seawall.integrations.checks`.
        timeout: Seconds it may take (> 0, or a timedelta). Default 1 s.
        required: Whether a failure makes the instance not ready. A check of a
            dependency the service can do without (a cache, recommendations)
            is reported but should not take the instance out of rotation.

    Raises:
        ConfigError: A bad name, function or timeout.

    .. versionadded:: 0.1
    """

    name: str
    fn: Callable[[], Awaitable[object] | object]
    timeout: float
    required: bool

    def __init__(
        self,
        name: str,
        fn: Callable[[], Awaitable[object] | object],
        *,
        timeout: float | timedelta = DEFAULT_CHECK_TIMEOUT,
        required: bool = True,
    ) -> None:
        given: object = name
        errors: list[str] = []
        if not isinstance(given, str) or not given:
            errors.append(f"name must be a non-empty string, got {given!r}")
        candidate: object = fn  # typed, but callers may not be
        if not callable(candidate):
            errors.append(f"fn must be an async callable, got {candidate!r}")
        seconds = _validate.seconds(timeout)
        errors += _validate.duration("timeout", seconds, allow_zero=False)
        _validate.fail_if(errors)
        # Frozen: fields are set once, here.
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "timeout", float(seconds))
        object.__setattr__(self, "required", bool(required))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one :class:`Check` in one evaluation.

    Attributes:
        name: The check's name.
        status: ``"ok"``, ``"failed"`` or ``"timeout"``.
        latency: Seconds the check took (for a check still hung from an earlier
            evaluation, how long it has been running).
        required: Whether it decides readiness.
        detail: What went wrong, only when the :class:`Health` was built with
            ``expose_details=True``; otherwise ``None``, always.
    """

    name: str
    status: CheckStatus
    latency: float
    required: bool
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the check passed."""
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class BreakerReading:
    """The circuit breaker of one dependency, as readiness saw it.

    Attributes:
        name: The dependency's name.
        state: The breaker's state when read.
        required: Whether the dependency is CRITICAL (an open breaker then
            makes the instance not ready).
        shadow: Whether the breaker is in shadow mode (it never rejects, so
            its state never counts).
    """

    name: str
    state: State
    required: bool
    shadow: bool = False

    @property
    def open(self) -> bool:
        """Whether the breaker rejects calls now (OPEN or FORCED_OPEN, not in shadow mode)."""
        return not self.shadow and (self.state is OPEN or self.state is FORCED_OPEN)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The answer to a liveness, readiness or startup probe.

    Attributes:
        status: ``"ok"`` or ``"failed"``.
        checks: The result of every check, in registration order.
        breakers: The breakers of the dependencies, in registration order.
        draining: Whether :meth:`Health.mark_draining` was called.
    """

    status: Literal["ok", "failed"]
    checks: tuple[CheckResult, ...] = ()
    breakers: tuple[BreakerReading, ...] = ()
    draining: bool = False

    @property
    def ok(self) -> bool:
        """Whether the probe passed (HTTP 200; otherwise 503)."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data.

        ::

            {"status": "failed",
             "checks": {"postgres": {"status": "timeout", "latency_ms": 300.2, "required": true}},
             "breakers": {"payment": {"status": "open", "state": "open", "required": true}}}

        ``"breakers"`` appears when dependencies were given, ``"draining": true``
        once draining, and a check's ``"detail"`` only when details are exposed.
        """
        body: dict[str, Any] = {"status": self.status}
        if self.draining:
            body["draining"] = True
        checks: dict[str, Any] = {}
        for result in self.checks:
            entry: dict[str, Any] = {
                "status": result.status,
                "latency_ms": round(result.latency * 1000, 1),
                "required": result.required,
            }
            if result.detail is not None:
                entry["detail"] = result.detail
            checks[result.name] = entry
        body["checks"] = checks
        if self.breakers:
            breakers: dict[str, Any] = {}
            for reading in self.breakers:
                item: dict[str, Any] = {
                    "status": "open" if reading.open else "ok",
                    "state": reading.state.value,
                    "required": reading.required,
                }
                if reading.shadow:
                    item["shadow"] = True
                breakers[reading.name] = item
            body["breakers"] = breakers
        return body


_LIVE = HealthReport(status="ok")


class Health:
    """Liveness, readiness and startup answers for one process.

    Args:
        checks: The readiness checks; they run concurrently.
        dependencies: The service's dependencies (a
            :class:`~seawall.registry.Registry` or any iterable of
            :class:`~seawall.dependency.Dependency`), read again at every probe.
            An OPEN or FORCED_OPEN breaker of a CRITICAL dependency makes the
            instance not ready, unless the breaker is in shadow mode; the
            breakers of other dependencies are reported and do not count.
        cache_ttl: Seconds an evaluation of the checks is reused (>= 0; 0
            caches nothing, but concurrent callers still share one
            evaluation). Breakers are read fresh at every call: that is free.
        expose_details: Put each failure's exception type and message in the
            report. Off by default: exception text often names hosts, users
            and connection strings.
        clock: Time source for the cache and latencies; default the real clock.

    A check that overruns its timeout is reported as ``"timeout"`` without
    waiting for it to stop. Its task is cancelled and left to finish in the
    background (a database driver may first try to cancel the query on the
    server, which can take seconds when the server hangs). Until it has
    finished, later evaluations do not call that check again -- a hung
    dependency never accumulates one stuck call per probe -- but report
    ``"timeout"`` at once and cancel the stuck call again, which drivers treat
    as "stop cleaning up and close the connection" (psycopg does).

    Raises:
        ConfigError: A bad option, or two checks with the same name.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_cached",
        "_cached_at",
        "_checks",
        "_dependencies",
        "_draining",
        "_inflight",
        "_now",
        "_running",
        "_started",
        "_ttl",
        "expose_details",
    )

    def __init__(
        self,
        checks: Iterable[Check] = (),
        *,
        dependencies: Iterable[Dependency] | None = None,
        cache_ttl: float | timedelta = DEFAULT_CACHE_TTL,
        expose_details: bool = False,
        clock: Clock | None = None,
    ) -> None:
        given = tuple(checks)
        errors: list[str] = []
        names: set[str] = set()
        for check in given:
            item: object = check
            if not isinstance(item, Check):
                errors.append(f"checks must hold Check objects, got {check!r}")
            elif check.name in names:
                errors.append(f"check names must be unique, got {check.name!r} twice")
            else:
                names.add(check.name)
        ttl = _validate.seconds(cache_ttl)
        errors += _validate.duration("cache_ttl", ttl)
        if dependencies is not None and not hasattr(dependencies, "__iter__"):
            errors.append(f"dependencies must be an iterable of Dependency, got {dependencies!r}")
        _validate.fail_if(errors)
        self._checks = given
        # A generator would be spent after the first probe; a Registry is kept
        # as it is, so dependencies registered later are seen too.
        if dependencies is not None and iter(dependencies) is dependencies:
            dependencies = tuple(dependencies)
        self._dependencies: Iterable[Dependency] = () if dependencies is None else dependencies
        self._ttl = ttl
        #: Whether reports carry exception text (see the class docstring).
        self.expose_details = expose_details
        self._now = (clock or MONOTONIC).monotonic
        self._cached: tuple[CheckResult, ...] | None = None
        self._cached_at = 0.0
        self._inflight: asyncio.Task[tuple[CheckResult, ...]] | None = None
        # Per check: the call that overran its timeout and has not finished
        # yet, with when it started.
        self._running: dict[str, tuple[asyncio.Task[object], float]] = {}
        self._started: HealthReport | None = None
        self._draining = False

    @property
    def checks(self) -> tuple[Check, ...]:
        """The registered checks."""
        return self._checks

    @property
    def draining(self) -> bool:
        """Whether :meth:`mark_draining` was called."""
        return self._draining

    def liveness(self) -> HealthReport:
        """Answer a liveness probe: always ok, checking no dependency.

        Being able to answer at all is the test: a process whose event loop is
        blocked never gets here, and its probe times out.
        """
        return _LIVE

    async def readiness(self) -> HealthReport:
        """Answer a readiness probe: the checks (cached) and the breakers (fresh).

        Failed when draining, when a required check is not ok, or when a
        CRITICAL dependency's breaker is open (not in shadow mode). Never
        raises for a failing check, and returns within the longest check
        timeout (plus scheduling), whatever the checks do.
        """
        if self._draining:
            return HealthReport(status="failed", breakers=self._read_breakers(), draining=True)
        return self._report(await self._results())

    def _report(self, results: tuple[CheckResult, ...]) -> HealthReport:
        breakers = self._read_breakers()
        if self._draining:  # it may have begun while the checks ran
            return HealthReport(status="failed", checks=results, breakers=breakers, draining=True)
        ok = all(r.ok for r in results if r.required) and not any(
            b.open for b in breakers if b.required
        )
        return HealthReport(status="ok" if ok else "failed", checks=results, breakers=breakers)

    async def startup(self) -> HealthReport:
        """Answer a startup probe: readiness until it passes once, then ok for good.

        An orchestrator holds liveness and readiness probes back until startup
        passes, so a slow start (migrations, warming a cache) is not mistaken
        for a hang. Once passed, the passing report is returned without
        running any check again.
        """
        started = self._started
        if started is not None:
            return started
        report = await self.readiness()
        if report.ok:
            self._started = report
        return report

    def mark_draining(self) -> None:
        """Make readiness fail from now on (call it on SIGTERM, before shutting down).

        The load balancer stops sending new requests while those in flight
        finish. Liveness is unaffected: a draining process is not stuck.
        """
        self._draining = True

    async def aclose(self, grace: float = 5.0) -> None:
        """Cancel any evaluation in flight and any call still hung, and wait for them.

        Waits up to ``grace`` seconds for them to finish; call it at shutdown,
        before closing the engines and clients the checks use.
        """
        tasks: list[asyncio.Task[Any]] = [task for task, _ in self._running.values()]
        if self._inflight is not None:
            tasks.append(self._inflight)
        loop = asyncio.get_running_loop()
        tasks = [task for task in tasks if task.get_loop() is loop and not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    # -- the evaluation ------------------------------------------------------

    async def _results(self) -> tuple[CheckResult, ...]:
        cached = self._cached
        if cached is not None and self._now() - self._cached_at < self._ttl:
            return cached
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.get_loop() is not loop:
            # A fresh context: the evaluation is shared by every waiting probe,
            # so it must not run under the first one's request deadline.
            task = loop.create_task(self._evaluate(), context=contextvars.Context())
            self._inflight = task
        # Shielded: a probe that gives up (its client disconnected) must not
        # cancel the evaluation the others are waiting for.
        return await asyncio.shield(task)

    async def _evaluate(self) -> tuple[CheckResult, ...]:
        try:
            results = tuple(await asyncio.gather(*(self._run(c) for c in self._checks)))
            self._cached = results
            self._cached_at = self._now()
            return results
        finally:
            self._inflight = None

    async def _run(self, check: Check) -> CheckResult:
        loop = asyncio.get_running_loop()
        started = self._now()
        stuck = self._running.get(check.name)
        if stuck is not None:
            task, since = stuck
            if task.get_loop() is loop and not task.done():
                # The last call has not even finished being cancelled: do not
                # pile another on the hung dependency; press the cancel again.
                task.cancel()
                return CheckResult(check.name, "timeout", started - since, check.required)
            del self._running[check.name]
        task = loop.create_task(_call(check.fn))
        try:
            done, _ = await asyncio.wait((task,), timeout=check.timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        latency = self._now() - started
        if not done:
            task.cancel()
            self._running[check.name] = (task, started)
            task.add_done_callback(self._forget(check.name))
            return CheckResult(check.name, "timeout", latency, check.required)
        return self._outcome(check, task, latency)

    def _forget(self, name: str) -> Callable[[asyncio.Task[object]], None]:
        def done(task: asyncio.Task[object]) -> None:
            if not task.cancelled():
                task.exception()  # retrieved: nobody else will look at it
            if self._running.get(name, (None, 0.0))[0] is task:
                del self._running[name]

        return done

    def _outcome(self, check: Check, task: asyncio.Task[object], latency: float) -> CheckResult:
        name, required = check.name, check.required
        if task.cancelled():
            # Only the check itself can have cancelled it: count it as a failure.
            return CheckResult(name, "failed", latency, required, self._detail("cancelled"))
        exc = task.exception()
        if exc is None:
            if task.result() is False:
                detail = self._detail("returned False")
                return CheckResult(name, "failed", latency, required, detail)
            return CheckResult(name, "ok", latency, required)
        status: CheckStatus = "timeout" if isinstance(exc, TimeoutError) else "failed"
        return CheckResult(name, status, latency, required, self._detail(_describe(exc)))

    def _detail(self, text: str) -> str | None:
        return text if self.expose_details else None

    def _read_breakers(self) -> tuple[BreakerReading, ...]:
        readings = []
        for dependency in self._dependencies:
            breaker = dependency.breaker
            if breaker is None:
                continue
            readings.append(
                BreakerReading(
                    dependency.name,
                    breaker.state,
                    required=dependency.criticality is Criticality.CRITICAL,
                    shadow=breaker.shadow,
                )
            )
        return tuple(readings)

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self._checks)
        return f"<Health checks=[{names}] cache_ttl={self._ttl}>"


async def _call(fn: Callable[[], Awaitable[object] | object]) -> object:
    result: object = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


def _describe(exc: BaseException) -> str:
    with contextlib.suppress(Exception):
        text = str(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return type(exc).__name__
