"""Server-side load shedding: refuse only the excess, and the least important first.

A service offered more than it can serve does not slow down gracefully: the
excess queues, every request waits behind it, callers give up while the
service still works on what they asked, and its goodput falls to nothing
while it is busier than ever. :class:`LoadShedMiddleware` caps the requests
in flight with an :class:`~seawall.AdaptiveLimit`, learnt from the service's
own latency, and answers the rest at once with ``503`` and ``Retry-After``.
What is admitted is served about as fast as without overload.

Priorities decide who is refused first. Each request gets one (0 is the most
important) from its route, given directly or as the criticality of the
dependency it serves (critical 0, degradable 1, background 2). A request of
priority ``p`` is admitted while the requests in flight are fewer than
``shares[p]`` of the limit: with the default shares ``(1.0, 0.75, 0.5)``,
recommendations (degradable) are refused once the service is three quarters
full, orders only when it is full. Health probes, metrics and anything in
``exempt`` are never shed nor counted: a shedding service is alive, and its
probes must say so.

*Own* latency and concurrency: the limit learns from each request's duration
minus the time it spent waiting in :class:`~seawall.Dependency` calls
(:mod:`seawall.waits`), and while a request waits on one its permit is lent
back, so that the requests counted in flight are those doing the service's
own work.
Waiting on a slow payment provider costs the service no capacity of its
own, and that dependency's own limit and breaker deal with it; shedding on
total latency would refuse product pages because payment is slow. Answers
that say nothing of the service's load teach it nothing: a 5xx of the
application (a dependency unavailable) is not sampled, and a ``504`` (the
request's deadline ran out) is a drop.

Use it outermost, around the deadline middleware, so that a refusal costs
the least::

    app.add_middleware(DeadlineMiddleware, default=25.0)
    app.add_middleware(
        LoadShedMiddleware,
        routes={"/recommendations": Criticality.DEGRADABLE, "POST /orders": 0},
    )

(Starlette runs the middleware added last first.)

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.adaptive import AdaptiveLimit
from seawall.dependency import Criticality
from seawall.events import LISTENERS, Listeners, LoadShed
from seawall.waits import Waits, waiting

__all__ = [
    "DEFAULT_EXEMPT",
    "DEFAULT_SHARES",
    "LoadShedMiddleware",
    "priority_of",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

#: Paths never shed nor counted (prefixes): probes and metrics.
DEFAULT_EXEMPT = ("/healthz", "/readyz", "/startupz", "/livez", "/metrics")
#: The share of the limit each priority may fill: 0 all of it, 1 three quarters, 2 half.
DEFAULT_SHARES = (1.0, 0.75, 0.5)

_PRIORITY_OF_CRITICALITY = {
    Criticality.CRITICAL: 0,
    Criticality.DEGRADABLE: 1,
    Criticality.BACKGROUND: 2,
}
_GATEWAY_TIMEOUT = 504
_SERVER_ERROR = 500


def priority_of(value: int | Criticality) -> int:
    """Return a route's priority: an integer as it is, a criticality as 0, 1 or 2."""
    if isinstance(value, Criticality):
        return _PRIORITY_OF_CRITICALITY[value]
    return value


class LoadShedMiddleware:
    """ASGI middleware: an adaptive limit on the requests in flight, shed by priority.

    Args:
        app: The ASGI application.
        limit: The limit (default: Gradient2 from 50, between 4 and 1,000,
            with a queue allowance of 2, named after ``name``). Its
            ``in_flight`` counts the requests being served.
        name: The shedder's name, in events, metrics and the 503 body.
        routes: Route priorities: keys ``"/path/prefix"`` or ``"METHOD
            /path/prefix"`` (the longest match wins), values an integer
            priority (0 the most important) or a :class:`~seawall.Criticality`.
        default_priority: The priority of a request no route matches.
        shares: The share of the limit each priority may fill, from priority
            0 on, decreasing, each in (0, 1]; a priority past the end takes the
            last share.
        exempt: Path prefixes never shed nor counted.
        retry_after: The ``Retry-After`` of a refusal, in seconds (> 0).
        clock: Time source for the latency samples; default the monotonic clock.
        listeners: Where :class:`~seawall.events.LoadShed` events go.

    Raises:
        ConfigError: A bad option; the message names each.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: AdaptiveLimit | None = None,
        name: str = "service",
        routes: Mapping[str, int | Criticality] | None = None,
        default_priority: int = 0,
        shares: Sequence[float] = DEFAULT_SHARES,
        exempt: Iterable[str] = DEFAULT_EXEMPT,
        retry_after: float = 1.0,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        errors: list[str] = []
        if not isinstance(name, str) or not name:
            errors.append(f"name must be a non-empty string, got {name!r}")
        given: object = limit
        if given is not None and not isinstance(given, AdaptiveLimit):
            errors.append(f"limit must be an AdaptiveLimit, got {given!r}")
        table = _routes(routes or {}, errors)
        errors += _validate.at_least("default_priority", default_priority, 0)
        share_list = list(shares)
        if not share_list or any(not _validate.is_number(x) or not 0 < x <= 1 for x in share_list):
            errors.append(f"shares must be numbers in (0, 1], got {shares!r}")
        elif share_list != sorted(share_list, reverse=True):
            errors.append(f"shares must not increase with priority, got {shares!r}")
        errors += _validate.duration("retry_after", retry_after, allow_zero=False)
        exempt_paths = tuple(exempt)
        if not all(isinstance(p, str) and p.startswith("/") for p in exempt_paths):
            errors.append(f"exempt must be path prefixes starting with '/', got {exempt!r}")
        _validate.fail_if(errors)
        self.app = app
        #: The shedder's name.
        self.name = name
        #: The adaptive limit on the requests in flight.
        self.limit = limit or AdaptiveLimit(
            name, initial=50, min=4, max=1000, queue_size=2, clock=clock, listeners=listeners
        )
        self._routes = table
        self._default = default_priority
        self._shares = tuple(float(x) for x in share_list)
        self._exempt = exempt_paths
        self._retry_after = retry_after
        self._now = (clock or MONOTONIC).monotonic
        self._listeners = LISTENERS if listeners is None else listeners
        self._body = json.dumps(
            {"error": "overloaded", "service": name, "retry_after": math.ceil(retry_after)}
        ).encode()
        #: Requests refused, by priority.
        self.shed: dict[int, int] = {}

    def priority(self, scope: Scope) -> tuple[str, int]:
        """Return the route key a request matched (or ``""``) and its priority."""
        path = scope.get("path", "")
        method = scope.get("method", "")
        for key, prefix, key_method, priority in self._routes:
            if path.startswith(prefix) and (key_method is None or key_method == method):
                return key, priority
        return "", self._default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: admit it, or answer 503 at once."""
        if scope["type"] != "http" or scope.get("path", "").startswith(self._exempt):
            await self.app(scope, receive, send)
            return
        route, priority = self.priority(scope)
        shares = self._shares
        share = shares[priority] if priority < len(shares) else shares[-1]
        limit = self.limit
        if not limit.try_acquire(share):
            await self._refuse(route, priority, share, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = self._now()
        # While the request waits on a dependency its permit is lent back: the
        # limit counts the requests doing the service's own work.
        with waiting(limit) as waits:
            try:
                await self.app(scope, receive, watch)
            except BaseException as exc:
                self._end(started, waits, _GATEWAY_TIMEOUT if isinstance(exc, TimeoutError) else 0)
                raise
        self._end(started, waits, status)

    def _end(self, started: float, waits: Waits, status: int) -> None:
        limit = self.limit
        if waits.close():
            limit.reclaim()  # a task it started still waits: take the permit to give it back
        if status == _GATEWAY_TIMEOUT:
            limit.release(self._own(started, waits), dropped=True)
        elif status >= _SERVER_ERROR or status == 0:
            limit.release()  # a failure of the application's own: no lesson in load
        else:
            limit.release(self._own(started, waits))

    def _own(self, started: float, waits: Waits) -> float:
        now = self._now()
        return max(0.0, now - started - waits.waited())

    async def _refuse(self, route: str, priority: int, share: float, send: Send) -> None:
        limit = self.limit
        self.shed[priority] = self.shed.get(priority, 0) + 1
        allowed = limit.limit if share >= 1.0 else max(1, int(limit.limit * share))
        if self._listeners:
            self._listeners.emit(
                LoadShed(
                    name=self.name,
                    at=self._now(),
                    route=route,
                    priority=priority,
                    limit=allowed,
                    in_flight=limit.in_flight,
                )
            )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(math.ceil(self._retry_after)).encode()),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})

    def __repr__(self) -> str:
        return f"<LoadShedMiddleware {self.name!r} {self.limit!r}>"


def _routes(
    routes: Mapping[str, int | Criticality], errors: list[str]
) -> tuple[tuple[str, str, str | None, int], ...]:
    table = []
    for key, value in routes.items():
        method, _, prefix = key.rpartition(" ")
        if not prefix.startswith("/"):
            errors.append(f"routes: {key!r} must be '/prefix' or 'METHOD /prefix'")
            continue
        given: object = value
        if isinstance(given, Criticality):
            priority = priority_of(given)
        elif isinstance(given, int) and not isinstance(given, bool) and given >= 0:
            priority = given
        else:
            errors.append(f"routes: {key!r} must map to a priority >= 0 or a Criticality")
            continue
        table.append((key, prefix, method.upper() or None, priority))
    # The longest prefix first, so that it wins; a method-bound key before a bare one.
    table.sort(key=lambda row: (-len(row[1]), row[2] is None))
    return tuple(table)
