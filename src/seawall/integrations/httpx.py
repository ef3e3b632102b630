"""Resilient httpx transports: every request to a dependency goes through its policies.

:class:`ResilientTransport` (asyncio) and :class:`ResilientSyncTransport` wrap
an httpx transport and send each request to a known host through that host's
:class:`~seawall.dependency.Dependency` -- its retry, breaker, bulkhead and
timeout -- one attempt at a time::

    payment = Dependency("payment", retry=Retry(attempts=3), breaker=CircuitBreaker("payment"))
    client = resilient_client(
        {"payments.internal": payment},
        timeouts={"payment": httpx.Timeout(2.0, connect=0.5)},
        idempotency_keys=True,
    )
    response = await client.post("http://payments.internal/charges", json=order)

Requests to hosts that are not routed pass through untouched.

**Responses.** A response whose status is one of ``failure_statuses`` (by
default :data:`FAILURE_STATUSES`: 408, 429, and every 5xx but 501 and 505) is
a failed attempt: its body is read (up to 256 KiB) and closed, so the
connection goes back to the pool, and :class:`UpstreamStatusError` is raised
inside the pipeline, carrying the ``status_code``, the ``response`` and the
parsed ``retry_after`` (``Retry-After`` in seconds or as an HTTP date), which
the retry honours. The breaker counts it, the retry tries again, and when the
policies give up the dependency is unavailable. Every other response -- 2xx,
3xx, 400, 404, 409, 422, 501, 505 -- is returned as it is, still streaming: a
4xx is an answer about the request, not an outage, and is never retried; 501
and 505 will not change on a second try. Connection errors and timeouts raised
by httpx are retried (see :data:`seawall.transient`).

:data:`seawall.transient` knows the common 5xx only (500, 502, 503, 504), and
it stays so. For a routed dependency whose retry classifies with a
:class:`~seawall.retry.Transient` (the default, or one made with ``with_`` /
``without``), and whose ``unavailable_on`` is the default
:func:`~seawall.dependency.is_unavailable`, the transport runs its requests
through a twin of the dependency -- the same breaker, bulkhead, retry budget,
listeners and fallback -- whose classifiers also accept the other 5xx of
``failure_statuses`` (506 to 599), except the statuses removed with
``without()`` (``transient.without(507)`` keeps 507 from being retried). The
dependency itself is left as it is. A classifier of your own (a predicate,
exception types) decides alone; to have one of these statuses returned as an
answer, leave it out of ``failure_statuses``.

**When it fails.** A CRITICAL dependency raises
:class:`~seawall.errors.DependencyUnavailable` once its policies give up; its
``cause`` is the last error (an :class:`UpstreamStatusError`, an httpx
transport error, :class:`~seawall.errors.DeadlineExceeded`, or a rejection by
an open breaker or a full bulkhead) and its ``retry_after`` the server's or the
breaker's. With ``return_last_response=True`` the caller gets the last failure
*response* instead (a 503 with its body), as plain httpx would have returned
it. A DEGRADABLE dependency answers with its ``Fallback.call``, which must
return an :class:`httpx.Response`. Errors that do not mean "unavailable"
(an invalid URL, a protocol error of our own making) propagate unchanged.

**Idempotency.** Only requests that are safe to send twice are retried: those
with an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or an
``Idempotency-Key`` header, and whose body is in memory (``content=``,
``json=``, ``data=``; a streamed or multipart body cannot be replayed). Any
other request -- a POST or PATCH without a key -- is sent exactly once, through
the same breaker, bulkhead, timeout and fallback. With ``idempotency_keys=True``
a POST or PATCH without a key gets one (a random UUID) before its first
attempt, and every attempt of that call sends the same key, so a server that
honours keys charges a payment once even when a response is lost and the
request is sent again.

**Timeouts and the deadline.** Per dependency, ``timeouts`` sets httpx's
connect, read, write and pool timeouts (otherwise the client's own apply). On
each attempt every one of them is clipped to what is left of the ambient
deadline (:func:`seawall.deadline`, tightened by the dependency's own
``timeout``); an attempt with nothing left is not sent
(:class:`~seawall.errors.DeadlineExceeded`), and an httpx timeout that fired
because the deadline clipped it is reported as
:class:`~seawall.errors.DeadlineExceeded` too. The time left is sent downstream
in :data:`DEADLINE_HEADER` (``Seawall-Deadline-Ms``: whole milliseconds left,
see :mod:`seawall.integrations._headers`) for the server's deadline middleware;
never to hosts that are not routed.

httpx's timeouts bound each network operation, not the whole exchange. In
async code the dependency's attempt enforces the deadline on the whole of it
(and a caller's own ``async with seawall.deadline(...)`` ends first and reports
its own expiry). Sync code cannot be interrupted: there the clipped httpx
timeouts are all that holds, so an attempt may overrun the deadline by the
time its earlier phases (connecting, sending) took.

Only a failure before the response headers arrive is retried: once the
transport has returned a response, its body streams to the caller, and an error
while reading it is the caller's to handle.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import httpx

from seawall import _validate
from seawall.adaptive import AdaptiveLimit
from seawall.bulkhead import Bulkhead, ThreadBulkhead
from seawall.core.backoff import parse_retry_after
from seawall.dependency import Criticality, Dependency, is_unavailable
from seawall.errors import DeadlineExceeded, DependencyUnavailable, SeawallError
from seawall.integrations._headers import DEADLINE_HEADER, format_deadline, parse_deadline
from seawall.retry import TRANSIENT_STATUSES, Retry, Transient
from seawall.timeouts import remaining

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

__all__ = [
    "DEADLINE_HEADER",
    "FAILURE_STATUSES",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENT_METHODS",
    "ResilientSyncTransport",
    "ResilientTransport",
    "Routes",
    "Timeouts",
    "UpstreamStatusError",
    "resilient_client",
    "resilient_sync_client",
]

#: The header that makes a non-idempotent request safe to retry (IETF draft
#: "The Idempotency-Key HTTP Header Field"; Stripe, Adyen and others honour it).
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"

#: Methods whose effect is the same however often they are sent (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

#: The response statuses that are failed attempts by default: 408 Request
#: Timeout, 429 Too Many Requests, and every 5xx but 501 Not Implemented and
#: 505 HTTP Version Not Supported, which no second try changes.
FAILURE_STATUSES: Final = frozenset({408, 429, *range(500, 600)} - {501, 505})

# The failure statuses that seawall.transient does not retry (506-599): the
# transport widens a routed dependency's default classifiers to them.
_MORE_SERVER_FAILURES = FAILURE_STATUSES - TRANSIENT_STATUSES

#: Where requests go: one dependency for every request, a mapping from host
#: (``"api.example.com"``, or ``"host:port"`` to tell ports apart) to dependency,
#: or a function of the request returning its dependency (``None``: pass through).
Routes: TypeAlias = (
    Dependency | Mapping[str, Dependency] | Callable[[httpx.Request], Dependency | None]
)

#: Per-dependency httpx timeouts: one ``httpx.Timeout`` (or seconds) for every
#: dependency, or a mapping from dependency name to one; ``None``: the client's.
Timeouts: TypeAlias = httpx.Timeout | float | Mapping[str, httpx.Timeout | float] | None

# A failure response's body is read so its connection can be reused, but only
# this much of it: a larger one is dropped, and its connection with it.
_MAX_ERROR_BODY = 256 * 1024

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_TIMEOUT_OF: tuple[tuple[type[httpx.TimeoutException], str], ...] = (
    (httpx.ConnectTimeout, "connect"),
    (httpx.ReadTimeout, "read"),
    (httpx.WriteTimeout, "write"),
    (httpx.PoolTimeout, "pool"),
)
# The response extensions that describe the response (not the connection it
# came on) and so survive into a rebuilt one.
_KEPT_EXTENSIONS = ("http_version", "reason_phrase")
# Content headers that no longer describe a body that was dropped.
_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")

_TimeoutDict: TypeAlias = dict[str, float | None]


class UpstreamStatusError(SeawallError, httpx.HTTPStatusError):
    """A routed request was answered with a failure status (by default 408, 429, 5xx but 501/505).

    Raised inside the dependency's pipeline, so the retry sees it (and honours
    ``retry_after``) and the breaker counts it; it reaches the caller as the
    ``cause`` of :class:`~seawall.errors.DependencyUnavailable`. It is also an
    :class:`httpx.HTTPStatusError`, so code that handles httpx's status errors
    handles it. Its ``response`` has been read (``.content``, ``.text`` and
    ``.json()`` work; a body over 256 KiB is dropped) and closed.

    Attributes:
        name: The dependency's name.
        status_code: The response's status.
        retry_after: Seconds the server asked to wait (``Retry-After`` as
            delta-seconds or an HTTP date, resolved when the response
            arrived), or ``None``.
        request: The :class:`httpx.Request` that was answered.
        response: The :class:`httpx.Response`.

    .. versionadded:: 0.1
    """

    def __init__(self, *, name: str, request: httpx.Request, response: httpx.Response) -> None:
        self.name = name
        self.status_code = response.status_code
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        url = request.url.copy_with(query=None, fragment=None)  # queries may hold secrets
        message = (
            f"dependency {name!r} answered {response.status_code} {response.reason_phrase}"
            f" to {request.method} {url}"
        )
        if self.retry_after is not None:
            message += f"; Retry-After {self.retry_after:.3g}s"
        super().__init__(message, request=request, response=response)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts; retry_after is restored as it was, not re-parsed later.
        parts = {"name": self.name, "request": self.request, "response": self.response}
        return (_rebuild, (type(self), parts), {"retry_after": self.retry_after})


def _rebuild(cls: type[UpstreamStatusError], parts: dict[str, Any]) -> UpstreamStatusError:
    return cls(**parts)


def _server_failure(exc: BaseException) -> bool:
    """Return whether ``exc`` is a failure response with a 5xx that ``transient`` does not list."""
    return isinstance(exc, UpstreamStatusError) and exc.status_code in _MORE_SERVER_FAILURES


def _unavailable_here(exc: BaseException) -> bool:
    """Return whether ``exc`` is unavailable by default, or a 5xx failure it does not list."""
    return is_unavailable(exc) or _server_failure(exc)


def _classified(dependency: Dependency) -> Dependency:
    """Return ``dependency``, or a twin whose default classifiers accept every 5xx failure.

    Only default classifiers are widened (a :class:`Transient` retry, the
    default ``unavailable_on``): one of the caller's own decides alone. The
    twin shares every policy object, so breaker counts and budgets stay one.
    """
    retry = dependency.retry
    on = None if retry is None else retry.config.on
    widen_unavailable = dependency._unavailable is is_unavailable
    if not isinstance(on, Transient) and not widen_unavailable:
        return dependency
    twin = copy.copy(dependency)
    if retry is not None and isinstance(on, Transient):
        c = retry.config
        twin._retry = Retry(
            attempts=c.attempts,
            backoff=c.backoff,
            # As statuses, not a predicate: one the caller removed with
            # without() stays removed (an added predicate would win over it).
            on=on.with_(*sorted(_MORE_SERVER_FAILURES - on.excluded_statuses)),
            on_result=c.on_result,
            max_elapsed=c.max_elapsed,
            respect_retry_after=c.respect_retry_after,
            budget=c.budget,
            reraise=c.reraise,
            name=retry.name,
            clock=retry._clock,
            listeners=retry._listeners,
            random=retry._random,
        )
        twin.config = dataclasses.replace(dependency.config, retry=twin._retry)
    if widen_unavailable:
        twin._unavailable = _unavailable_here
    return twin


class _Route:
    """What one dependency needs per request: its two pipelines and its timeouts."""

    __slots__ = ("dependency", "name", "once", "timeout")

    def __init__(
        self, dependency: Dependency, once: Dependency, timeout: _TimeoutDict | None
    ) -> None:
        self.name = dependency.name
        #: The full pipeline, for requests that may be retried (the routed
        #: dependency, or its twin with widened classifiers: see _classified).
        self.dependency = dependency
        #: The same policies without the retry, for requests sent once.
        self.once = once
        self.timeout = timeout


def _timeout_dict(field: str, value: object) -> tuple[_TimeoutDict | None, list[str]]:
    if isinstance(value, httpx.Timeout):
        spec = value.as_dict()
        errors = [m for key, v in spec.items() if v is not None for m in _validate.duration(key, v)]
        return spec, [f"{field}: {m}" for m in errors]
    if _validate.is_number(value):
        errors = _validate.duration(field, value, allow_zero=False)
        seconds = float(value)  # type: ignore[arg-type]
        return dict.fromkeys(_TIMEOUT_KEYS, seconds), errors
    return None, [f"{field} must be an httpx.Timeout or seconds, got {value!r}"]


class _Core:
    """Routing, attempt preparation and response classification, shared by both transports."""

    __slots__ = (
        "_by_host",
        "_cache",
        "_default_timeout",
        "_failure_statuses",
        "_idempotency_keys",
        "_named_timeouts",
        "_propagate_deadline",
        "_return_last_response",
        "_router",
        "_sync",
    )

    def __init__(
        self,
        routes: Routes,
        *,
        sync: bool,
        timeouts: Timeouts,
        idempotency_keys: bool,
        return_last_response: bool,
        propagate_deadline: bool,
        failure_statuses: Iterable[int],
    ) -> None:
        self._sync = sync
        errors: list[str] = []
        flags: tuple[tuple[str, object], ...] = (  # typed, but callers may not be
            ("idempotency_keys", idempotency_keys),
            ("return_last_response", return_last_response),
            ("propagate_deadline", propagate_deadline),
        )
        for flag, value in flags:
            if not isinstance(value, bool):
                errors.append(f"{flag} must be True or False, got {value!r}")
        statuses = frozenset(failure_statuses)
        errors += [
            f"failure_statuses must hold HTTP statuses from 100 to 599, got {s!r}"
            for s in sorted(statuses, key=repr)
            if not (isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599)  # noqa: PLR2004 - the HTTP status range
        ]
        self._failure_statuses = statuses
        self._idempotency_keys = idempotency_keys
        self._return_last_response = return_last_response
        self._propagate_deadline = propagate_deadline
        self._default_timeout: _TimeoutDict | None = None
        self._named_timeouts: dict[str, _TimeoutDict] = {}
        errors += self._init_timeouts(timeouts)
        self._by_host: dict[str, _Route] = {}
        self._router: Callable[[httpx.Request], Dependency | None] | None = None
        # Per dependency: its classified and retry-less twins, and timeouts. Weak
        # keys, and values that do not refer to their key, so a router's
        # discarded dependencies go.
        self._cache: weakref.WeakKeyDictionary[
            Dependency, tuple[Dependency, Dependency, _TimeoutDict | None]
        ] = weakref.WeakKeyDictionary()
        errors += self._init_routes(routes)
        _validate.fail_if(errors)

    def _init_timeouts(self, timeouts: Timeouts) -> list[str]:
        if timeouts is None:
            return []
        if not isinstance(timeouts, Mapping):
            spec, errors = _timeout_dict("timeouts", timeouts)
            self._default_timeout = spec
            return errors
        errors = []
        for name, value in timeouts.items():
            spec, more = _timeout_dict(f"timeouts[{name!r}]", value)
            errors += more
            if spec is not None:
                self._named_timeouts[name] = spec
        return errors

    def _init_routes(self, routes: object) -> list[str]:
        if isinstance(routes, Dependency):  # before callable(): a Dependency is a decorator
            errors = self._check_dependency(routes)
            if not errors:
                self._route(routes)  # checked and cached now, not on the first request
                self._router = lambda _request: routes
                errors = self._unknown_timeouts({routes.name})
            return errors
        if isinstance(routes, Mapping):
            return self._init_hosts(routes)
        if callable(routes):
            self._router = routes
            return []
        return [f"routes must be a Dependency, a mapping of hosts or a function, got {routes!r}"]

    def _init_hosts(self, routes: Mapping[object, object]) -> list[str]:
        errors = []
        for host, dependency in routes.items():
            if not isinstance(host, str) or not host or "/" in host:
                errors.append(f"routes keys must be hosts like 'api.example.com', got {host!r}")
                continue
            if not isinstance(dependency, Dependency):
                errors.append(f"routes[{host!r}] must be a Dependency, got {dependency!r}")
                continue
            problems = self._check_dependency(dependency)
            errors += problems
            if not problems:
                self._by_host[host.lower()] = self._route(dependency)
        return errors + self._unknown_timeouts({r.name for r in self._by_host.values()})

    def _unknown_timeouts(self, names: set[str]) -> list[str]:
        return [
            f"timeouts names {name!r}, which is not a routed dependency"
            for name in self._named_timeouts
            if name not in names
        ]

    def _check_dependency(self, dependency: Dependency) -> list[str]:
        """Return why ``dependency`` cannot answer HTTP requests here, if it cannot."""
        name = dependency.name
        errors = []
        if dependency.criticality is Criticality.BACKGROUND:
            errors.append(f"dependency {name!r} is BACKGROUND: send it events, not requests")
        fallback = dependency.config.fallback
        if fallback is not None and fallback.kind != "call":
            errors.append(
                f"dependency {name!r} has a {fallback.kind!r} fallback: an HTTP fallback must"
                " build a fresh httpx.Response per request; use Fallback.call"
            )
        bulkhead = dependency.bulkhead
        wanted = ThreadBulkhead if self._sync else Bulkhead
        # An adaptive limit serves both kinds of client.
        if bulkhead is not None and not isinstance(bulkhead, (wanted, AdaptiveLimit)):
            errors.append(f"dependency {name!r} needs a {wanted.__name__} here, got {bulkhead!r}")
        return errors

    def _route(self, dependency: Dependency) -> _Route:
        known = self._cache.get(dependency)
        if known is None:
            timeout = self._named_timeouts.get(dependency.name, self._default_timeout)
            classified = _classified(dependency)
            known = (classified, classified.without_retry(), timeout)
            self._cache[dependency] = known
        return _Route(*known)

    # -- per request ---------------------------------------------------------------

    def route_for(self, request: httpx.Request) -> _Route | None:
        """Return the route of ``request``, or ``None`` to pass it through."""
        router = self._router
        if router is None:
            url = request.url
            host = url.host
            port = url.port
            if port is not None:
                netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                route = self._by_host.get(netloc)
                if route is not None:
                    return route
            return self._by_host.get(host)
        dependency: object = router(request)  # typed, but routers may not be
        if dependency is None:
            return None
        if not isinstance(dependency, Dependency):
            msg = f"the router returned {dependency!r}, not a Dependency or None"
            raise TypeError(msg)
        if dependency not in self._cache:
            problems = self._check_dependency(dependency)
            if problems:
                raise TypeError("; ".join(problems))
        return self._route(dependency)

    def begin(
        self, request: httpx.Request, route: _Route
    ) -> tuple[Dependency, _TimeoutDict | None]:
        """Start one logical call: add its idempotency key, pick its pipeline and timeouts."""
        headers = request.headers
        safe = request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY_HEADER in headers
        if not safe and self._idempotency_keys:
            # Before the first attempt, so that every attempt sends the same key.
            headers[IDEMPOTENCY_KEY_HEADER] = str(uuid.uuid4())
            safe = True
        # Only a body held in memory can be sent again.
        replayable = isinstance(request.stream, httpx.ByteStream)
        pipeline = route.dependency if safe and replayable else route.once
        base = route.timeout
        if base is None:
            # The client's timeouts for this request, read once: attempts overwrite them.
            client_timeout = request.extensions.get("timeout")
            base = dict(client_timeout) if isinstance(client_timeout, dict) else None
        return pipeline, base

    def prepare(
        self, request: httpx.Request, route: _Route, base: _TimeoutDict | None
    ) -> tuple[float, frozenset[str]]:
        """Set one attempt's timeouts and deadline header.

        Returns the seconds left of the deadline (infinity without one) and the
        timeouts that the deadline clipped.

        Raises:
            DeadlineExceeded: Nothing is left of the deadline: the attempt is not sent.
        """
        left = remaining()
        if left is None:
            if route.timeout is not None:
                request.extensions = {**request.extensions, "timeout": dict(route.timeout)}
            return float("inf"), frozenset()
        if left <= 0:
            raise DeadlineExceeded(name=route.name, timeout=0.0)
        timeouts: _TimeoutDict = {}
        clipped = []
        for key in _TIMEOUT_KEYS:
            value = None if base is None else base.get(key)
            if value is None or value > left:
                value = left
                clipped.append(key)
            timeouts[key] = value
        # A new dict: the one the request came with may be shared with the caller.
        request.extensions = {**request.extensions, "timeout": timeouts}
        if self._propagate_deadline:
            sent = parse_deadline(request.headers.get(DEADLINE_HEADER))
            request.headers[DEADLINE_HEADER] = format_deadline(
                left if sent is None else min(left, sent)
            )
        return left, frozenset(clipped)

    @staticmethod
    def deadline_error(
        exc: httpx.TimeoutException, route: _Route, left: float, clipped: frozenset[str]
    ) -> DeadlineExceeded | None:
        """Return the DeadlineExceeded that an httpx timeout really is, if the deadline set it."""
        for kind, key in _TIMEOUT_OF:
            if isinstance(exc, kind):
                return DeadlineExceeded(name=route.name, timeout=left) if key in clipped else None
        return None

    def is_failure(self, response: httpx.Response) -> bool:
        """Return whether ``response`` is a failed attempt (raised, not returned)."""
        return response.status_code in self._failure_statuses

    def last_response(self, exc: Exception) -> httpx.Response | None:
        """Return the last failure response to give the caller, or ``None`` to raise ``exc``."""
        if not self._return_last_response:
            return None
        if isinstance(exc, DependencyUnavailable):
            cause = exc.cause
            exc = cause if isinstance(cause, Exception) else exc
        if not isinstance(exc, UpstreamStatusError):
            return None
        kept = exc.response
        return httpx.Response(
            kept.status_code,
            headers=kept.headers,
            stream=kept.stream,  # our ByteStream: it replays
            extensions=kept.extensions,
        )


def _checked(result: object, route: _Route) -> httpx.Response:
    """Return the pipeline's answer, which a fallback may have made: it must be a Response."""
    if not isinstance(result, httpx.Response):
        msg = f"the fallback of {route.name!r} answered {result!r}, not an httpx.Response"
        raise TypeError(msg)
    return result


def _failure(
    route: _Route, request: httpx.Request, response: httpx.Response, raw: bytes | None
) -> UpstreamStatusError:
    """Build the error for a failure response whose raw body was read (``None``: too large)."""
    headers = response.headers
    if raw is None:
        headers = headers.copy()
        for name in _BODY_HEADERS:
            headers.pop(name, None)
        raw = b""
    kept = httpx.Response(
        response.status_code,
        headers=headers,
        stream=httpx.ByteStream(raw),
        request=request,
        extensions={k: v for k, v in response.extensions.items() if k in _KEPT_EXTENSIONS},
    )
    with contextlib.suppress(httpx.DecodingError):
        kept.read()  # decodes gzip & co. now, so .text works on the error
    return UpstreamStatusError(name=route.name, request=request, response=kept)


# The failure body is read from the response's stream itself, not through
# Response.aiter_raw(): a transport may hand back a response it has already read
# (httpx.MockTransport does), whose stream still replays the raw bytes.


async def _drain_async(response: httpx.Response) -> bytes | None:
    """Read the raw body (``None`` past the cap) and close the response."""
    chunks = []
    size = 0
    try:
        async for chunk in cast("AsyncIterable[bytes]", response.stream):
            size += len(chunk)
            if size > _MAX_ERROR_BODY:
                return None
            chunks.append(chunk)
    finally:
        await response.aclose()
    return b"".join(chunks)


def _drain(response: httpx.Response) -> bytes | None:
    """Read the raw body (``None`` past the cap) and close the response."""
    chunks = []
    size = 0
    try:
        for chunk in cast("Iterable[bytes]", response.stream):
            size += len(chunk)
            if size > _MAX_ERROR_BODY:
                return None
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


class ResilientTransport(httpx.AsyncBaseTransport):
    """An async httpx transport that sends routed requests through their dependency.

    See the module docstring for what is retried, what the caller sees, and
    how timeouts and the deadline header work. Use it as an
    ``httpx.AsyncClient``'s ``transport`` (or through :func:`resilient_client`);
    closing it closes the wrapped transport.

    Args:
        routes: Where requests go: a :class:`~seawall.dependency.Dependency` for
            every request; a mapping from host (``"api.example.com"``, or
            ``"host:port"``) to dependency; or a function of the request that
            returns its dependency, or ``None`` to pass it through untouched.
        transport: The transport that sends each attempt. Default: a new
            ``httpx.AsyncHTTPTransport()``.
        timeouts: httpx's connect/read/write/pool timeouts for routed requests:
            one ``httpx.Timeout`` (or seconds) for every dependency, or a
            mapping from dependency name to one. Default: the client's own.
            Either way, each is clipped to the ambient deadline per attempt.
        idempotency_keys: Give a POST or PATCH without ``Idempotency-Key`` a
            random one before its first attempt, so that it may be retried.
            Default false: such requests are sent once.
        return_last_response: When the policies give up on a failure
            response, return that response (already read) instead of raising
            :class:`~seawall.errors.DependencyUnavailable`. Default false.
        propagate_deadline: Send the time left of the ambient deadline in
            :data:`DEADLINE_HEADER`. Default true.
        failure_statuses: Response statuses that are failed attempts, raised
            as :class:`UpstreamStatusError`. Default :data:`FAILURE_STATUSES`
            (408, 429, every 5xx but 501 and 505), all of them retried and
            unavailable under the default classifiers (see the module
            docstring); another one (a 409 added here, say) that the
            dependency's retry and ``unavailable_on`` do not recognise reaches
            the caller as the :class:`UpstreamStatusError` itself.

    Raises:
        ConfigError: A bad option, or a dependency that cannot serve here (a
            BACKGROUND one, a fallback other than ``Fallback.call``, a bulkhead
            of the wrong kind); the message names each.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        routes: Routes,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts = None,
        idempotency_keys: bool = False,
        return_last_response: bool = False,
        propagate_deadline: bool = True,
        failure_statuses: Iterable[int] = FAILURE_STATUSES,
    ) -> None:
        self._core = _Core(
            routes,
            sync=False,
            timeouts=timeouts,
            idempotency_keys=idempotency_keys,
            return_last_response=return_last_response,
            propagate_deadline=propagate_deadline,
            failure_statuses=failure_statuses,
        )
        self._inner = httpx.AsyncHTTPTransport() if transport is None else transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``: through its dependency if it is routed, else as it is."""
        core = self._core
        route = core.route_for(request)
        if route is None:
            return await self._inner.handle_async_request(request)
        pipeline, base = core.begin(request, route)
        try:
            result = await pipeline.call(self._attempt, request, route, base)
        except (DependencyUnavailable, UpstreamStatusError) as exc:
            last = core.last_response(exc)
            if last is None:
                raise
            return last
        return _checked(result, route)

    async def _attempt(
        self, request: httpx.Request, route: _Route, base: _TimeoutDict | None
    ) -> httpx.Response:
        core = self._core
        left, clipped = core.prepare(request, route, base)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TimeoutException as exc:
            expired = core.deadline_error(exc, route, left, clipped)
            if expired is None:
                raise
            raise expired from exc
        if core.is_failure(response):
            raise _failure(route, request, response, await _drain_async(response))
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class ResilientSyncTransport(httpx.BaseTransport):
    """A sync httpx transport that sends routed requests through their dependency.

    The sync twin of :class:`ResilientTransport`, for ``httpx.Client`` (or
    :func:`resilient_sync_client`). Dependencies need a
    :class:`~seawall.bulkhead.ThreadBulkhead` if any. Sync code cannot be
    interrupted, so timeouts are enforced by httpx alone: every one is clipped
    to the deadline, which the dependency's ``timeout`` tightens per attempt.

    Takes the arguments of :class:`ResilientTransport`; ``transport`` is an
    ``httpx.BaseTransport``, by default a new ``httpx.HTTPTransport()``.

    Raises:
        ConfigError: See :class:`ResilientTransport`.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        routes: Routes,
        *,
        transport: httpx.BaseTransport | None = None,
        timeouts: Timeouts = None,
        idempotency_keys: bool = False,
        return_last_response: bool = False,
        propagate_deadline: bool = True,
        failure_statuses: Iterable[int] = FAILURE_STATUSES,
    ) -> None:
        self._core = _Core(
            routes,
            sync=True,
            timeouts=timeouts,
            idempotency_keys=idempotency_keys,
            return_last_response=return_last_response,
            propagate_deadline=propagate_deadline,
            failure_statuses=failure_statuses,
        )
        self._inner = httpx.HTTPTransport() if transport is None else transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``: through its dependency if it is routed, else as it is."""
        core = self._core
        route = core.route_for(request)
        if route is None:
            return self._inner.handle_request(request)
        pipeline, base = core.begin(request, route)
        try:
            result = pipeline.call_sync(self._attempt, request, route, base)
        except (DependencyUnavailable, UpstreamStatusError) as exc:
            last = core.last_response(exc)
            if last is None:
                raise
            return last
        return _checked(result, route)

    def _attempt(
        self, request: httpx.Request, route: _Route, base: _TimeoutDict | None
    ) -> httpx.Response:
        core = self._core
        left, clipped = core.prepare(request, route, base)
        try:
            response = self._inner.handle_request(request)
        except httpx.TimeoutException as exc:
            expired = core.deadline_error(exc, route, left, clipped)
            if expired is None:
                raise
            raise expired from exc
        if core.is_failure(response):
            raise _failure(route, request, response, _drain(response))
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


# Client options that configure the transport httpx would have built: they go
# to the wrapped transport (httpx ignores them when given a transport).
_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits", "proxy", "trust_env")


def _split_options(
    client_options: dict[str, Any], transport: object
) -> tuple[dict[str, Any], dict[str, Any]]:
    if "mounts" in client_options:
        msg = "mounts would send requests around the resilient transport; route them instead"
        raise TypeError(msg)
    inner = {k: client_options[k] for k in _TRANSPORT_OPTIONS if k in client_options}
    for key in inner:
        if key != "trust_env":  # the client reads it too (.netrc, proxies)
            del client_options[key]
    if transport is not None and set(inner) - {"trust_env"}:
        msg = f"give {sorted(set(inner) - {'trust_env'})} to your transport, not to the client"
        raise TypeError(msg)
    return inner, client_options


def resilient_client(
    routes: Routes,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeouts: Timeouts = None,
    idempotency_keys: bool = False,
    return_last_response: bool = False,
    propagate_deadline: bool = True,
    failure_statuses: Iterable[int] = FAILURE_STATUSES,
    **client_options: Any,
) -> httpx.AsyncClient:
    """Return an ``httpx.AsyncClient`` whose requests go through a :class:`ResilientTransport`.

    The resilience options are :class:`ResilientTransport`'s. Other keyword
    arguments go to ``httpx.AsyncClient`` (``base_url``, ``headers``,
    ``timeout`` ...), except those that configure its transport (``verify``,
    ``cert``, ``http1``, ``http2``, ``limits``, ``proxy``), which go to the
    ``httpx.AsyncHTTPTransport`` built here when ``transport`` is not given.
    Environment proxies are not used. ``mounts`` is refused: mounted
    transports would bypass the policies.

    Raises:
        ConfigError: See :class:`ResilientTransport`.
        TypeError: ``mounts`` was given, or transport options with a ``transport``.

    .. versionadded:: 0.1
    """
    inner, options = _split_options(dict(client_options), transport)
    resilient = ResilientTransport(
        routes,
        transport=httpx.AsyncHTTPTransport(**inner) if transport is None else transport,
        timeouts=timeouts,
        idempotency_keys=idempotency_keys,
        return_last_response=return_last_response,
        propagate_deadline=propagate_deadline,
        failure_statuses=failure_statuses,
    )
    return httpx.AsyncClient(transport=resilient, **options)


def resilient_sync_client(
    routes: Routes,
    *,
    transport: httpx.BaseTransport | None = None,
    timeouts: Timeouts = None,
    idempotency_keys: bool = False,
    return_last_response: bool = False,
    propagate_deadline: bool = True,
    failure_statuses: Iterable[int] = FAILURE_STATUSES,
    **client_options: Any,
) -> httpx.Client:
    """Return an ``httpx.Client`` whose requests go through a :class:`ResilientSyncTransport`.

    The sync twin of :func:`resilient_client`; the same options, and the same
    errors.

    .. versionadded:: 0.1
    """
    inner, options = _split_options(dict(client_options), transport)
    resilient = ResilientSyncTransport(
        routes,
        transport=httpx.HTTPTransport(**inner) if transport is None else transport,
        timeouts=timeouts,
        idempotency_keys=idempotency_keys,
        return_last_response=return_last_response,
        propagate_deadline=propagate_deadline,
        failure_statuses=failure_statuses,
    )
    return httpx.Client(transport=resilient, **options)
