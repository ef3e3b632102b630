"""A real HTTP downstream for integration tests: uvicorn on loopback, with scripted faults.

:class:`Downstream` is an ASGI app that records every request (method, path,
headers, body) and answers each one as told, per path, by a
:class:`seawall.chaos.Decision`: run normally, answer an error status (with
``Retry-After`` in seconds or as an HTTP date), wait first, hang, drop the
connection without answering, or do the work and then drop the connection
before the response ("commit, then lose the response"). Decisions come from a
script (:meth:`Downstream.script`: in order, the last one repeating) or from a
:class:`seawall.chaos.Fault` (:meth:`Downstream.fault`, drawn per request);
without either, requests run normally.

Behind the fault layer, a small Starlette app:

* ``POST /charges`` charges once per ``Idempotency-Key``: a request whose key
  was seen gets the first charge back (``Idempotent-Replayed: true``) instead
  of a new one. :attr:`Downstream.charges` is the ledger.
* ``GET /stream?chunks=N`` streams N small chunks.
* any other path echoes the method and path as JSON.

:func:`serve` runs it on 127.0.0.1 (a port picked by the OS) with uvicorn in a
background thread, and stops it on exit::

    with serve(Downstream()) as down:
        down.script("/pay", respond(503, retry_after=1), ok())
        httpx.get(down.url + "/pay")           # 503, then 200 from then on
        assert len(down.requests("/pay")) == 1

Every control method is thread-safe: the server runs in its own thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from seawall.chaos import Action, Chaos, Decision, Fault

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]

__all__ = [
    "Charge",
    "Downstream",
    "Seen",
    "drop",
    "hang",
    "lose_response",
    "ok",
    "respond",
    "serve",
]


# -- what to do --------------------------------------------------------------------


def ok(*, delay: float = 0.0) -> Decision:
    """Run the request normally, after ``delay`` seconds."""
    return Decision(delay, Action.PASS)


def respond(
    status: int, *, retry_after: float | None = None, as_date: bool = False, delay: float = 0.0
) -> Decision:
    """Answer ``status`` (body ``{"error": status}``) without doing the work.

    ``as_date`` sends ``Retry-After`` as an HTTP date ``retry_after`` seconds
    from now (HTTP dates have whole seconds, so it reads as up to 1 s less).
    """
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = (
            formatdate(time.time() + retry_after, usegmt=True) if as_date else f"{retry_after:g}"
        )
    return Decision(delay, Action.FAIL, status, headers)


def drop(*, delay: float = 0.0) -> Decision:
    """Close the connection without answering, and without doing the work."""
    return Decision(delay, Action.DROP)


def lose_response(*, delay: float = 0.0) -> Decision:
    """Do the work (commit), then close the connection instead of answering."""
    return Decision(delay, Action.LOSE_RESPONSE)


def hang() -> Decision:
    """Never answer, until the client gives up."""
    return Decision(0.0, Action.HANG)


# -- what happened -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as the downstream received it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    client: tuple[str, int] | None  # the connection's far end: equal ones share a connection


@dataclass(frozen=True, slots=True)
class Charge:
    """One entry of the ``/charges`` ledger."""

    id: str
    key: str | None


class Downstream:
    """The ASGI app: scripted faults in front of a tiny payments-and-echo service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Decision]] = {}
        self._faults: dict[str, Chaos] = {}
        self._seen: list[Seen] = []
        self._ledger: dict[str, Charge] = {}
        self._charges: list[Charge] = []
        #: The base URL, ``http://127.0.0.1:<port>``, once :func:`serve` runs it.
        self.url = ""
        self._app = Starlette(
            routes=[
                Route("/charges", self._charge, methods=["POST"]),
                Route("/stream", _stream, methods=["GET"]),
                Route("/{path:path}", _echo, methods=["GET", "HEAD", "POST", "PUT", "PATCH"]),
            ]
        )

    # -- control -----------------------------------------------------------------

    def script(self, path: str, *decisions: Decision) -> None:
        """Answer the next requests to ``path`` with ``decisions``, in order; the last repeats."""
        if not decisions:
            msg = "script() needs at least one decision"
            raise ValueError(msg)
        with self._lock:
            self._scripts[path] = list(decisions)

    def fault(self, path: str, fault: Fault | None) -> None:
        """Draw each answer for ``path`` from ``fault`` (``None``: remove it)."""
        with self._lock:
            if fault is None:
                self._faults.pop(path, None)
            else:
                self._faults[path] = Chaos(fault)

    def requests(self, path: str | None = None) -> list[Seen]:
        """Return the requests received (for ``path`` only, if given), oldest first."""
        with self._lock:
            return [s for s in self._seen if path is None or s.path == path]

    @property
    def charges(self) -> list[Charge]:
        """Every charge made, in order (a replayed key adds none)."""
        with self._lock:
            return list(self._charges)

    def reset(self) -> None:
        """Forget scripts, faults, requests and charges."""
        with self._lock:
            self._scripts.clear()
            self._faults.clear()
            self._seen.clear()
            self._ledger.clear()
            self._charges.clear()

    def _arrived(self, seen: Seen) -> Decision:
        with self._lock:
            self._seen.append(seen)
            script = self._scripts.get(seen.path)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
            chaos = self._faults.get(seen.path)
        return ok() if chaos is None else chaos.decide()

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Record the request, then act out its decision."""
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        seen = Seen(
            scope["method"],
            scope["path"],
            headers,
            body,
            time.monotonic(),
            None if client is None else (client[0], client[1]),
        )
        decision = self._arrived(seen)
        if decision.delay and await _disconnects_within(receive, decision.delay):
            return  # the client gave up while we were slow
        action = decision.action
        if action is Action.HANG:
            await _disconnected(receive)
        elif action is Action.DROP:
            await _drop(send, receive)
        elif action is Action.FAIL:
            answer = JSONResponse(
                {"error": decision.status}, status_code=decision.status, headers=decision.headers
            )
            await answer(scope, receive, send)
        elif action is Action.LOSE_RESPONSE:
            await self._app(scope, _replay(body, receive), _discard)
            await _drop(send, receive)
        else:
            await self._app(scope, _replay(body, receive), send)

    # -- the service -------------------------------------------------------------------

    async def _charge(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        with self._lock:
            charge = None if key is None else self._ledger.get(key)
            replayed = charge is not None
            if charge is None:
                charge = Charge(id=f"ch_{len(self._charges) + 1}", key=key)
                self._charges.append(charge)
                if key is not None:
                    self._ledger[key] = charge
        return JSONResponse(
            {"id": charge.id, "key": key, "replayed": replayed},
            status_code=201,
            headers={"Idempotent-Replayed": "true"} if replayed else None,
        )


async def _echo(request: Request) -> Response:
    return JSONResponse({"method": request.method, "path": request.url.path})


async def _stream(request: Request) -> Response:
    count = int(request.query_params.get("chunks", "3"))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/plain")


# -- ASGI plumbing -------------------------------------------------------------------


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return body
        body += bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return body


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the app the body already read, then the real messages."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # type: ignore[no-any-return]

    return replay


async def _discard(message: Message) -> None:
    """A ``send`` that loses the response."""


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _disconnects_within(receive: Any, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await _disconnected(receive)
    except TimeoutError:
        return False
    return True


async def _drop(send: Any, receive: Any) -> None:
    """Close the connection without a response: the client sees it cut off.

    ASGI has no way to say this, so it reaches for uvicorn's connection: the
    ``send`` uvicorn hands the app is a method of the request cycle, which holds
    the transport.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        msg = "dropping a connection needs uvicorn's h11 server"
        raise RuntimeError(msg)
    transport.close()
    # Return only once uvicorn has seen the disconnection, or it answers 500 for us.
    await _disconnected(receive)


# -- serving -----------------------------------------------------------------------


@contextmanager
def serve(app: Downstream, *, startup_timeout: float = 10.0) -> Iterator[Downstream]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a background thread; stop it on exit.

    The OS picks the port (no race for a "free" one); ``app.url`` is set to it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",  # _drop() knows h11's request cycle
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    # Signal handlers are installed only from the main thread: uvicorn skips them here.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="downstream", daemon=True
    )
    thread.start()
    try:
        give_up = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > give_up:
                msg = "the downstream did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)
        app.url = f"http://127.0.0.1:{port}"
        yield app
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()
