"""ASGI (Starlette, FastAPI): request deadlines, HTTP answers for seawall's errors, health routes.

Four pieces, each usable alone::

    app = FastAPI()                                   # or Starlette()
    app.add_middleware(DeadlineMiddleware, default=25.0)
    app.add_middleware(BodyLimitMiddleware, max_bytes=64 * 1024)
    install_exception_handlers(app)
    app.router.routes.extend(health_routes(health))

:class:`DeadlineMiddleware`
    Gives every HTTP request an ambient deadline (:func:`seawall.deadline`)
    from the caller's :data:`~seawall.integrations._headers.DEADLINE_HEADER`
    or the server's default, enforces it (a handler still running when it
    passes is cancelled and answered ``504``), and marks degraded responses
    with headers (see below). It also answers seawall's errors that escape the
    application, so a bare ASGI app gets the same mapping as one with
    :func:`install_exception_handlers`. (Add it to Starlette and FastAPI apps
    with ``add_middleware``: wrapped around one from outside, it comes after
    Starlette's own error middleware, which answers 500 first.)

:func:`install_exception_handlers`
    Registers Starlette/FastAPI exception handlers that turn seawall's errors
    into JSON answers (table below). Exception text never reaches the body.
    With FastAPI, it also answers request validation errors: ``422`` (``400``
    for a body that is not JSON at all) with a body that always serialises
    and repeats little of the input (:func:`validation_answer`).

:class:`BodyLimitMiddleware`
    Answers ``413`` to a request whose body is larger than ``max_bytes``,
    before the application reads it, so a 20 MB body costs neither the
    memory to parse it nor a 20 MB error answer.

:func:`health_routes`
    ``/healthz``, ``/readyz`` and ``/startupz`` for a :class:`seawall.health.Health`.

Errors and their answers (the body is JSON; ``Retry-After`` is whole seconds,
rounded up, at least 1):

=====================  ======  =========================================================
error                  status  body (``n``: a name, ``s``: whole seconds)
=====================  ======  =========================================================
DependencyUnavailable  503     ``{"error": "dependency_unavailable", "dependency": n,``
                               ``"retry_after": s}``
CircuitOpenError       503     ``{"error": "circuit_open", "dependency": n, "retry_after": s}``
BulkheadFullError      503     ``{"error": "bulkhead_full", "dependency": n}``
other RejectedError    503     ``{"error": "rejected", "dependency": n}``
DeadlineExceeded       504     ``{"error": "deadline_exceeded", "scope": n}``
RequestValidationError 422     ``{"error": "invalid_request", "detail": [...]}``
(FastAPI)              400     ``{"error": "malformed_body", "detail": [...]}`` (not JSON)
too large a body       413     ``{"error": "body_too_large", "max_bytes": b}``
=====================  ======  =========================================================

(``scope`` is left out when unnamed.) ``retry_after`` and ``Retry-After`` say
the same wait: the error's own (the breaker's, or the downstream's
``Retry-After``) when known; otherwise ``default_retry_after``
(:data:`DEFAULT_RETRY_AFTER`, 5 s), a conservative hint, so that a client
that honours ``Retry-After`` backs off rather than retry at once; with
``default_retry_after=None`` both are left out when the wait is unknown.

A full bulkhead answers ``503``, not ``429``: 429 tells *this client* it sent
too much (clients and gateways may throttle or ban it), while a full bulkhead
is this server's capacity for one dependency, used up by everyone; 503 says
"temporarily unable", and load balancers and retrying clients treat it as
"try another instance", which is what helps.

Degraded responses (some DEGRADABLE dependency answered from its fallback
while the request was served) carry:

* ``Seawall-Degraded: recommendations;kind=value, prices;kind=stale;age=42``
  -- each degraded dependency once, with its fallback kind and, for stale
  values, their age in whole seconds (rounded up); a Structured Fields list.
* ``Age: 42`` when a stale value was served: the age of the oldest one (RFC 9111 §5.1).
* ``Cache-Control: no-store`` (configurable): a fallback answer must not
  outlive the outage in a shared cache; with ``max-stale=42`` added when a
  stale value was served (the same age as ``Age``).

RFC 9111 defines ``max-stale`` as a *request* directive (§5.2.1.2): on a
response, caches ignore it. It is there for clients and for people reading the
response, who look for it; ``Age`` says the same in the standard way, and
``no-store`` is what keeps the answer out of caches. ``Warning: 110`` is not
used: RFC 9111 made the ``Warning`` header obsolete.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seawall import _validate
from seawall.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    DependencyUnavailable,
    RejectedError,
)
from seawall.fallback import DegradationRecord, track_degradations
from seawall.integrations._headers import DEADLINE_HEADER, parse_deadline
from seawall.timeouts import current_deadline, deadline

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from seawall.health import Health, HealthReport

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_REQUEST_DEADLINE",
    "DEFAULT_RETRY_AFTER",
    "DEGRADED_HEADER",
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "DeadlineMiddleware",
    "ErrorAnswer",
    "degraded_header",
    "error_answer",
    "health_routes",
    "install_exception_handlers",
    "validation_answer",
]

DEFAULT_REQUEST_DEADLINE = 25.0
"""Seconds a request may take when its caller sent no (usable) deadline."""

DEFAULT_RETRY_AFTER = 5.0
"""Seconds sent in ``Retry-After`` with a 503 whose wait is unknown: a conservative hint."""

DEFAULT_MAX_BODY = 1024 * 1024
"""Bytes of request body :class:`BodyLimitMiddleware` lets through by default (1 MiB)."""

DEGRADED_HEADER = "Seawall-Degraded"
"""The response header that names the dependencies answered from a fallback."""

#: The errors :func:`install_exception_handlers` registers a handler for.
_MAPPED: tuple[type[Exception], ...] = (
    DependencyUnavailable,
    CircuitOpenError,
    BulkheadFullError,
    RejectedError,
    DeadlineExceeded,
)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """The HTTP answer for one of seawall's errors.

    Attributes:
        status: The status code (503 or 504).
        body: The JSON body: an ``"error"`` code and what it concerns, never
            the exception's text.
        headers: Extra headers (``Retry-After`` on a 503 of an unavailable
            dependency or an open circuit).
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Return the body as compact JSON bytes."""
        return json.dumps(self.body, separators=(",", ":")).encode()


def error_answer(
    exc: BaseException, *, default_retry_after: float | None = DEFAULT_RETRY_AFTER
) -> ErrorAnswer | None:
    """Return the HTTP answer for ``exc``, or ``None`` if it is not one seawall maps.

    See the module docstring for the table.

    Args:
        exc: The error to answer.
        default_retry_after: Seconds for ``Retry-After`` (and the body's
            ``retry_after``) when a :class:`~seawall.errors.DependencyUnavailable`
            or :class:`~seawall.errors.CircuitOpenError` does not know its wait:
            a conservative hint when the wait is unknown; ``None`` omits the
            header. Default :data:`DEFAULT_RETRY_AFTER`.

    Raises:
        ConfigError: ``default_retry_after`` is not a finite number > 0 or ``None``.
    """
    _validate.fail_if(_check_default_retry_after(default_retry_after))
    if isinstance(exc, DependencyUnavailable):
        wait = _known(exc.retry_after, default_retry_after)
        return _unavailable("dependency_unavailable", exc.name, wait)
    if isinstance(exc, CircuitOpenError):
        wait = _known(exc.retry_after, default_retry_after)
        return _unavailable("circuit_open", exc.name, wait)
    if isinstance(exc, BulkheadFullError):
        return _unavailable("bulkhead_full", exc.name, None)
    if isinstance(exc, RejectedError):
        return _unavailable("rejected", getattr(exc, "name", None), None)
    if isinstance(exc, DeadlineExceeded):
        body: dict[str, Any] = {"error": "deadline_exceeded"}
        if exc.name is not None:
            body["scope"] = exc.name
        return ErrorAnswer(504, body)
    return None


def _unavailable(code: str, name: object, retry_after: float | None) -> ErrorAnswer:
    body: dict[str, Any] = {"error": code}
    if isinstance(name, str):
        body["dependency"] = name
    headers: dict[str, str] = {}
    seconds = _whole_seconds(retry_after)
    if seconds is not None:
        body["retry_after"] = seconds
        headers["Retry-After"] = str(seconds)
    return ErrorAnswer(503, body, headers)


def _known(retry_after: float | None, default: float | None) -> float | None:
    """Return the error's wait if it is usable, else the default."""
    if retry_after is None or not math.isfinite(retry_after):
        return default
    return retry_after


def _check_default_retry_after(value: object) -> list[str]:
    if value is None:
        return []
    return _validate.duration("default_retry_after", value, allow_zero=False)


def _whole_seconds(retry_after: float | None) -> int | None:
    """Round a wait up to whole seconds, at least 1 (``None`` if unknown or not finite)."""
    if retry_after is None or not math.isfinite(retry_after):
        return None
    return max(1, math.ceil(retry_after))


# -- validation errors --------------------------------------------------------------

#: How many of a request's validation errors an answer lists, and how long a
#: location part or a message may be: enough to fix the request, too little to
#: echo a large or hostile input back.
_MAX_ERRORS = 20
_MAX_LOC = 10
_MAX_TEXT = 100


def validation_answer(errors: Sequence[Mapping[str, Any]]) -> ErrorAnswer:
    r"""Return the answer to a request that failed validation (FastAPI's ``exc.errors()``).

    ``422 {"error": "invalid_request", "detail": [{"loc": [...], "type": t,
    "msg": m}, ...]}``, or ``400 {"error": "malformed_body", ...}`` when the
    body is not JSON at all (``json_invalid``). The input itself is never
    repeated: it may be megabytes long, hold numbers JSON cannot carry
    (``NaN``, ``Infinity``: Python's JSON parser accepts them, no JSON writer
    may write them) or strings UTF-8 cannot (a lone surrogate, ``"\ud800"``).
    Locations and messages are cut to 100 characters, at most 10 parts and
    20 errors (``"more"`` counts the rest), and made valid UTF-8, so the
    body always serialises.
    """
    listed = []
    for error in list(errors)[:_MAX_ERRORS]:
        loc = error.get("loc", ())
        parts = loc if isinstance(loc, (list, tuple)) else (loc,)
        listed.append(
            {
                "loc": [_safe_part(part) for part in parts[:_MAX_LOC]],
                "type": _safe_text(error.get("type", "")),
                "msg": _safe_text(error.get("msg", "")),
            }
        )
    malformed = any(error.get("type") == "json_invalid" for error in errors)
    body: dict[str, Any] = {"error": "malformed_body" if malformed else "invalid_request"}
    body["detail"] = listed
    if len(errors) > _MAX_ERRORS:
        body["more"] = len(errors) - _MAX_ERRORS
    return ErrorAnswer(400 if malformed else 422, body)


def _safe_part(part: object) -> int | str:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    return _safe_text(part)


def _safe_text(value: object) -> str:
    """``value`` as valid UTF-8 text of at most ``_MAX_TEXT`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text[: _MAX_TEXT + 1].encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _answer_response(answer: ErrorAnswer) -> Response:
    return Response(
        answer.encode(),
        status_code=answer.status,
        headers=answer.headers,
        media_type="application/json",
    )


# -- exception handlers -----------------------------------------------------------


def install_exception_handlers(
    app: Starlette, *, default_retry_after: float | None = DEFAULT_RETRY_AFTER
) -> None:
    """Register handlers that answer seawall's errors with 503/504 and a JSON body.

    Works for Starlette and FastAPI applications (FastAPI is a Starlette).
    Registered for :class:`~seawall.errors.DependencyUnavailable`,
    :class:`~seawall.errors.CircuitOpenError`,
    :class:`~seawall.errors.BulkheadFullError`, any other
    :class:`~seawall.errors.RejectedError`, and
    :class:`~seawall.errors.DeadlineExceeded`; see the module docstring for
    the answers. With FastAPI installed, also for its
    ``RequestValidationError`` (:func:`validation_answer`): FastAPI's own
    handler repeats the input, so a ``NaN`` or a lone surrogate in a request
    made it fail with a 500, and a 1 MB field came back as a 1 MB answer.
    Handlers already registered for these classes are replaced.

    Args:
        app: The Starlette or FastAPI application.
        default_retry_after: Seconds for ``Retry-After`` when an unavailable
            dependency or an open circuit does not know its wait: a
            conservative hint when the wait is unknown; ``None`` omits the
            header. Default :data:`DEFAULT_RETRY_AFTER` (5 s).

    Raises:
        ConfigError: ``default_retry_after`` is not a finite number > 0 or ``None``.
    """
    _validate.fail_if(_check_default_retry_after(default_retry_after))

    async def handle(_request: Request, exc: Exception) -> Response:
        answer = error_answer(exc, default_retry_after=default_retry_after)
        if answer is None:  # pragma: no cover - only registered for mapped errors
            raise exc
        return _answer_response(answer)

    for cls in _MAPPED:
        app.add_exception_handler(cls, handle)
    try:
        from fastapi.exceptions import RequestValidationError  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - Starlette without FastAPI
        return

    async def invalid(_request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return _answer_response(validation_answer(errors))

    app.add_exception_handler(RequestValidationError, invalid)


# -- the deadline middleware --------------------------------------------------------

#: The answer to a request whose caller's deadline had passed when it arrived.
_LATE = ErrorAnswer(504, {"error": "deadline_exceeded", "scope": "request"})


class DeadlineMiddleware:
    """Pure ASGI middleware: an ambient, enforced deadline for every HTTP request.

    The budget is the caller's deadline header (milliseconds left, see
    :mod:`seawall.integrations._headers`) if it is usable, capped at
    ``maximum``; otherwise ``default``. A malformed header (text, a negative
    or signed number, an exponent, overlong) is ignored: the request gets the
    default, never an error. A header of ``0`` means the caller's budget is
    already spent: the request is answered ``504`` at once, without running
    the application, since nobody is waiting for its answer.

    While the application runs, :func:`seawall.remaining` reports the time
    left and every seawall policy honours it. With ``enforce`` (the default),
    an application still working when the deadline passes is cancelled and
    the request answered ``504 {"error": "deadline_exceeded", "scope":
    "request"}``. The deadline bounds the time to the *start* of the
    response: once the status and headers are sent, the timer is lifted, so
    streamed bodies (server-sent events, downloads) are not cut off.

    WebSocket and lifespan traffic passes through untouched.

    Args:
        app: The ASGI application to wrap.
        default: Seconds allowed when the caller sent no usable deadline
            (> 0), or ``None`` for no deadline then. Default 25 s.
        header: The deadline header's name.
        maximum: The longest budget a caller may ask for (> 0); ``None`` means
            ``default``: the server's own budget is an upper bound, a caller
            can only shorten it.
        enforce: Cancel and answer ``504`` when the deadline passes; when
            false, the deadline is only set (as with ``with deadline(...)`` in
            sync code) for the policies and clients that read it.
        degraded_cache_control: The ``Cache-Control`` value put on degraded
            responses (replacing the application's; ``max-stale=<age>`` is
            added to it when a stale value was served), or ``None`` to leave
            the application's.
        default_retry_after: Seconds for ``Retry-After`` when an error it
            answers (an unavailable dependency, an open circuit) does not know
            its wait: a conservative hint when the wait is unknown; ``None``
            omits the header. Default :data:`DEFAULT_RETRY_AFTER` (5 s). Give
            :func:`install_exception_handlers` the same value.

    Raises:
        ConfigError: A bad option; the message names each.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_cache_control",
        "_header",
        "app",
        "default",
        "default_retry_after",
        "enforce",
        "maximum",
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: float | None = DEFAULT_REQUEST_DEADLINE,
        header: str = DEADLINE_HEADER,
        maximum: float | None = None,
        enforce: bool = True,
        degraded_cache_control: str | None = "no-store",
        default_retry_after: float | None = DEFAULT_RETRY_AFTER,
    ) -> None:
        errors: list[str] = []
        if default is not None:
            errors += _validate.duration("default", default, allow_zero=False)
        if maximum is not None:
            errors += _validate.duration("maximum", maximum, allow_zero=False)
        errors += _check_default_retry_after(default_retry_after)
        if not isinstance(header, str) or not header or not header.isascii():
            errors.append(f"header must be a non-empty ASCII string, got {header!r}")
        _validate.fail_if(errors)
        self.app = app
        #: Seconds allowed without a usable header (``None``: no deadline).
        self.default = default
        #: The cap on a caller's budget (``None``: no cap).
        self.maximum = default if maximum is None else maximum
        #: Whether an overrun is cancelled and answered 504.
        self.enforce = enforce
        #: ``Retry-After`` seconds for a 503 whose wait is unknown (``None``: none sent).
        self.default_retry_after = default_retry_after
        self._header = header.lower().encode("latin-1")
        self._cache_control = (
            None if degraded_cache_control is None else degraded_cache_control.encode("latin-1")
        )

    def budget(self, scope: Scope) -> float | None:
        """Return the seconds this request may take (``0.0``: already late; ``None``: no limit)."""
        raw = None
        for name, value in scope.get("headers", ()):
            if name == self._header:
                raw = value
                break
        asked = None if raw is None else parse_deadline(raw)
        if asked is None:
            return self.default
        cap = self.maximum
        return asked if cap is None else min(asked, cap)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget = self.budget(scope)
        with track_degradations() as record:
            if budget is not None and budget <= 0:
                await _send_answer(send, _LATE)
                return
            exchange = _Exchange(send, record, self._cache_control)
            try:
                if budget is None:
                    await self.app(scope, receive, exchange.send)
                else:
                    with deadline(budget):
                        await self._run(scope, receive, exchange, budget)
            except Exception as exc:
                answer = error_answer(exc, default_retry_after=self.default_retry_after)
                if answer is None or exchange.started:
                    raise
                await _send_answer(exchange.send, answer)

    async def _run(
        self, scope: Scope, receive: Receive, exchange: _Exchange, budget: float
    ) -> None:
        if not self.enforce:
            await self.app(scope, receive, exchange.send)
            return
        # The timer ends at the ambient deadline just set (it may be an outer,
        # earlier one); asyncio's loop clock is time.monotonic(), as ours.
        timer = asyncio.timeout_at(current_deadline())
        exchange.timer = timer
        try:
            async with timer:
                await self.app(scope, receive, exchange.send)
        except TimeoutError as exc:
            if not timer.expired():
                raise  # the application's own timeout, not ours
            raise DeadlineExceeded(name="request", timeout=budget) from exc
        finally:
            exchange.timer = None  # finished: an error answer sent now needs no timer


class _Exchange:
    """One request's ``send``: notes when the response starts and adds degraded headers."""

    __slots__ = ("_cache_control", "_record", "_send", "started", "timer")

    def __init__(self, send: Send, record: DegradationRecord, cache_control: bytes | None) -> None:
        self._send = send
        self._record = record
        self._cache_control = cache_control
        self.started = False
        self.timer: asyncio.Timeout | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            timer = self.timer
            if timer is not None and not timer.expired():
                timer.reschedule(None)  # the answer has begun: do not cut the body
            if self._record:
                message = dict(message)
                message["headers"] = _degraded_headers(
                    list(message.get("headers", ())), self._record, self._cache_control
                )
        await self._send(message)


_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def _item(name: str) -> str:
    """Write a dependency name as a Structured Fields item: a token, or else a quoted string.

    Whatever the name holds, the header stays valid: a name that is not a
    token is quoted, with anything outside printable ASCII replaced by ``?``.
    """
    if _TOKEN.fullmatch(name):
        return name
    text = _NOT_PRINTABLE.sub("?", name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def degraded_header(record: DegradationRecord) -> str:
    """Return the ``Seawall-Degraded`` value for a request's degradations.

    ``name;kind=<kind>`` for each dependency once, in order, with ``;age=<s>``
    (whole seconds, rounded up) for stale values, joined by ``", "``.
    """
    kinds: dict[str, str] = {}
    ages: dict[str, float] = {}
    for item in record.items:
        kinds.setdefault(item.dependency, item.kind)
        if item.age is not None:
            ages[item.dependency] = max(ages.get(item.dependency, 0.0), item.age)
    parts = []
    for name, kind in kinds.items():
        part = f"{_item(name)};kind={kind}"
        if name in ages:
            part += f";age={math.ceil(ages[name])}"
        parts.append(part)
    return ", ".join(parts)


def _degraded_headers(
    headers: list[tuple[bytes, bytes]], record: DegradationRecord, cache_control: bytes | None
) -> list[tuple[bytes, bytes]]:
    replaced = {b"age"}
    if cache_control is not None:
        replaced.add(b"cache-control")
    out = [(k, v) for k, v in headers if k.lower() not in replaced]
    out.append((DEGRADED_HEADER.lower().encode(), degraded_header(record).encode("latin-1")))
    oldest = record.max_age
    age = None if oldest is None else str(math.ceil(oldest)).encode()
    if age is not None:
        out.append((b"age", age))
    if cache_control is not None:
        if age is not None:
            cache_control += b", max-stale=" + age
        out.append((b"cache-control", cache_control))
    return out


async def _send_answer(send: Send, answer: ErrorAnswer) -> None:
    body = answer.encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- request size ----------------------------------------------------------------------


class BodyLimitMiddleware:
    """Pure ASGI middleware: answer ``413`` to a request body larger than ``max_bytes``.

    A ``Content-Length`` over the limit is answered at once, before the
    application runs and before any of the body is read. A body without one
    (chunked) is counted as the application reads it; when it passes the
    limit, the read fails and, if the application has not answered yet, its
    answer (whatever it made of the failed read) is replaced by the ``413``.
    Either way the answer is ``{"error": "body_too_large", "max_bytes": n}``
    with ``Connection: close``: the rest of the body is not read, so the
    connection cannot carry another request.

    Without it, a server reads and parses whatever it is sent: 20 MB of JSON
    is 20 MB of memory per request, and a validation error about it may
    repeat it.

    Args:
        app: The ASGI application to wrap.
        max_bytes: The largest body let through (>= 0). Default
            :data:`DEFAULT_MAX_BODY` (1 MiB).

    Raises:
        ConfigError: ``max_bytes`` is not an integer >= 0.

    .. versionadded:: 0.3
    """

    __slots__ = ("_answer", "app", "max_bytes")

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        _validate.fail_if(_validate.at_least("max_bytes", max_bytes, 0))
        self.app = app
        #: The largest body let through, in bytes.
        self.max_bytes = max_bytes
        self._answer = ErrorAnswer(
            413, {"error": "body_too_large", "max_bytes": max_bytes}, {"Connection": "close"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_answer(send, self._answer)
            return
        counted = _CountedBody(receive, send, self.max_bytes, self._answer)
        try:
            await self.app(scope, counted.receive, counted.send)
        except Exception:
            if not counted.exceeded or counted.started:
                raise
        if counted.exceeded and not counted.started:
            await counted.refuse()


class BodyTooLarge(Exception):  # noqa: N818 - it is what happened, not an "Error" of the code
    """Raised to an application reading a body past :class:`BodyLimitMiddleware`'s limit."""


class _CountedBody:
    """One request's ``receive`` and ``send``, counting the body against the limit."""

    __slots__ = ("_answer", "_limit", "_receive", "_seen", "_send", "exceeded", "started")

    def __init__(self, receive: Receive, send: Send, limit: int, answer: ErrorAnswer) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._answer = answer
        self._seen = 0
        self.exceeded = False
        self.started = False

    async def receive(self) -> Message:
        if self.exceeded:
            raise BodyTooLarge(self._limit)
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.exceeded = True
                raise BodyTooLarge(self._limit)
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded and not self.started:
            return  # the application's answer to a failed read: the 413 replaces it
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def refuse(self) -> None:
        self.started = True
        await _send_answer(self._send, self._answer)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11, httptools) refuses these before us
    return None


# -- health routes -------------------------------------------------------------------


def health_routes(
    health: Health,
    *,
    liveness: str = "/healthz",
    readiness: str = "/readyz",
    startup: str | None = "/startupz",
) -> list[Route]:
    """Return Starlette routes serving ``health``'s probes as JSON, 200 or 503.

    Add them to a Starlette or FastAPI app with
    ``app.router.routes.extend(health_routes(health))``. Liveness touches no
    dependency and answers while a readiness check hangs (readiness waits at
    most its checks' timeouts). Answers are marked ``Cache-Control:
    no-store``. Pass ``startup=None`` to leave the startup probe out.
    """

    async def live(_request: Request) -> JSONResponse:
        return _probe_answer(health.liveness())

    async def ready(_request: Request) -> JSONResponse:
        return _probe_answer(await health.readiness())

    async def started(_request: Request) -> JSONResponse:
        return _probe_answer(await health.startup())

    routes = [
        Route(liveness, live, methods=["GET"], name="healthz", include_in_schema=False),
        Route(readiness, ready, methods=["GET"], name="readyz", include_in_schema=False),
    ]
    if startup is not None:
        routes.append(
            Route(startup, started, methods=["GET"], name="startupz", include_in_schema=False)
        )
    return routes


def _probe_answer(report: HealthReport) -> JSONResponse:
    return JSONResponse(
        report.to_dict(),
        status_code=200 if report.ok else 503,
        headers={"Cache-Control": "no-store"},
    )
