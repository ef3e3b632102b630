"""The simulators' finite capacity: N workers, a FIFO queue, and the work nobody waits for.

A real downstream is not a ``sleep``: it has a few workers, and what it cannot
start at once waits in a queue. Each request holds a worker for its service
time (a base plus jitter, times a fault's ``scale``, longer when the queue is
deep and the server contends with itself). A caller that gives up -- a client
timeout, a cancelled request -- closes its connection, but most servers do not
notice: the request keeps its place in the queue and its worker until done,
and the work is wasted. That wasted work is what keeps a retry storm going
after its trigger has passed (Bronson et al., "Metastable Failures in
Distributed Systems", HotOS 2021). ``notice_disconnect`` makes the server drop
such a request instead, the way a server that checks for it would.

:class:`Capacity` is the configuration (frozen, validated, changeable at run
time through ``PUT /_control/capacity``); :class:`Workers` is the queue and
the figures per wall-clock second: arrivals admitted, queue depth and busy
workers (time averages and peaks), completed, wasted, and abandoned.
"""

from __future__ import annotations

import asyncio
import math
import random as _random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

#: Per-second figures older than this many seconds are forgotten...
KEEP_SECONDS = 3600
#: ...this many at a time, so that forgetting is not a scan per request.
FORGET_BATCH = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    """How much work a simulator can do at once, and how long each piece takes.

    Attributes:
        workers: Requests served at once (>= 0; 0 stalls the server: requests
            queue and none starts, as when its own database stops answering).
            ``None``: unlimited, the old model where every request only sleeps.
        service_time: Seconds a request holds its worker, at least (>= 0).
        jitter: Up to this many seconds more, drawn uniformly (>= 0).
        scale: Multiplies ``service_time + jitter`` (> 0): a fault that makes
            every request slower, such as a slow disk (2.0: twice as long).
        contention: Each request waiting in the queue when a request starts
            makes it this share slower (>= 0; 0.01: 100 waiting double it), as a
            server fighting over locks, memory and its own database would.
        max_slowdown: The most contention can multiply a service time by (>= 1).
        queue_limit: At most this many requests wait; beyond, a 503 at once.
            ``None``: unbounded (an asyncio server's accept queue).
        notice_disconnect: Drop a request whose caller has gone, queued or
            working; by default the work goes on, and is counted as wasted.
    """

    workers: int | None = 8
    service_time: float = 0.02
    jitter: float = 0.0
    scale: float = 1.0
    contention: float = 0.0
    max_slowdown: float = 3.0
    queue_limit: int | None = None
    notice_disconnect: bool = False

    def __post_init__(self) -> None:
        errors = []
        for name in ("workers", "queue_limit"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                errors.append(f"{name} must be an integer >= 0 or null, got {value!r}")
        for name in ("service_time", "jitter", "contention"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                errors.append(f"{name} must be a finite number >= 0, got {value!r}")
        if not _is_number(self.scale) or not math.isfinite(self.scale) or self.scale <= 0:
            errors.append(f"scale must be a finite number > 0, got {self.scale!r}")
        slowdown = self.max_slowdown
        if not _is_number(slowdown) or not math.isfinite(slowdown) or slowdown < 1:
            errors.append(f"max_slowdown must be a finite number >= 1, got {slowdown!r}")
        notice: object = self.notice_disconnect  # JSON may hold anything
        if not isinstance(notice, bool):
            errors.append(f"notice_disconnect must be true or false, got {notice!r}")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def limited(self) -> bool:
        """Whether requests queue for workers at all."""
        return self.workers is not None

    @property
    def mean_service_time(self) -> float:
        """The mean seconds a request holds its worker, with an empty queue."""
        return (self.service_time + self.jitter / 2) * self.scale

    @property
    def throughput(self) -> float | None:
        """Requests per second the workers can complete, with an empty queue."""
        if self.workers is None:
            return None
        mean = self.mean_service_time
        return math.inf if mean == 0 else self.workers / mean

    def changed(self, data: Mapping[str, Any]) -> Capacity:
        """Return a copy with the fields of ``data`` changed (the control API's PUT).

        Raises:
            ValueError: An unknown field or a bad value; the message names it.
        """
        known = {f.name for f in fields(self)}
        # What to_mapping() derives may come back in a PUT of a GET's answer.
        data = {k: v for k, v in data.items() if k != "throughput"}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"unknown capacity field(s) {unknown}; known: {sorted(known)}"
            raise ValueError(msg)
        return replace(self, **dict(data))

    def to_mapping(self) -> dict[str, Any]:
        """The capacity as JSON, with its throughput."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        throughput = self.throughput
        out["throughput"] = (
            None if throughput is None or math.isinf(throughput) else round(throughput, 3)
        )
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Level:
    """A count that steps up and down; its time average and peak per wall-clock second."""

    __slots__ = ("_area", "_peak", "_since", "value")

    def __init__(self, now: float) -> None:
        self.value = 0
        self._since = now
        self._area: defaultdict[int, float] = defaultdict(float)
        self._peak: defaultdict[int, int] = defaultdict(int)

    def add(self, delta: int, now: float) -> None:
        """Change the count by ``delta`` at ``now``."""
        self._accrue(now)
        self.value += delta
        second = math.floor(now)
        self._peak[second] = max(self._peak[second], self.value)

    def _accrue(self, now: float) -> None:
        # Split [since, now) at whole seconds: each piece adds its area, and the
        # level is a peak of every second it held for a while. A wall clock that
        # jumps ahead costs at most the seconds that are kept.
        t = max(self._since, math.floor(now) - KEEP_SECONDS)
        if self.value and now > t:
            while t < now:
                second = math.floor(t)
                end = min(now, second + 1.0)
                self._area[second] += self.value * (end - t)
                self._peak[second] = max(self._peak[second], self.value)
                t = end
        self._since = max(self._since, now)
        _forget(self._area, now)
        _forget(self._peak, now)

    def series(self, now: float) -> tuple[dict[int, float], dict[int, int]]:
        """Per second up to ``now``: the mean and the peak of the count."""
        self._accrue(now)
        return dict(self._area), dict(self._peak)


def _forget(counter: dict[int, Any], now: float) -> None:
    """Drop the seconds older than KEEP_SECONDS, once a minute's worth has built up."""
    if len(counter) <= KEEP_SECONDS + FORGET_BATCH:
        return
    oldest = math.floor(now) - KEEP_SECONDS
    for second in [s for s in counter if s < oldest]:
        del counter[second]


class Refused(Exception):  # noqa: N818 - an outcome, not a bug
    """The queue is full (``queue_limit``): answer 503 at once."""


class Gone(Exception):  # noqa: N818 - an outcome, not a bug
    """The caller left, and the server noticed (``notice_disconnect``)."""


class Workers:
    """The workers and the FIFO queue of one simulator, and what they did each second.

    One event loop drives it (the simulator's); nothing here is thread-safe.

    Args:
        capacity: The initial capacity.
        wall: The wall clock (seconds): per-second figures are keyed by its
            whole seconds, like the simulators' arrival counts.
        random: Floats in [0, 1), for the jitter.
        sleep: How a worker spends its service time (a test's virtual time).
    """

    def __init__(
        self,
        capacity: Capacity,
        *,
        wall: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.capacity = capacity
        self._wall = wall
        self._random = random
        self._sleep = sleep
        self._waiting: deque[asyncio.Future[None]] = deque()
        now = wall()
        self.busy = Level(now)
        self.queued = Level(now)
        self.counts: dict[str, Counter[int]] = {
            k: Counter() for k in ("admitted", "completed", "wasted", "abandoned", "refused")
        }
        #: Worker-seconds spent on requests whose caller had gone, per second they ended in.
        self.wasted_seconds: defaultdict[int, float] = defaultdict(float)

    def configure(self, capacity: Capacity) -> None:
        """Change the capacity now: more workers start queued requests at once."""
        self.capacity = capacity
        self._hand_off()

    @property
    def depth(self) -> int:
        """Requests waiting for a worker."""
        return len(self._waiting)

    def _count(self, kind: str, now: float) -> None:
        counter = self.counts[kind]
        counter[math.floor(now)] += 1
        _forget(counter, now)

    def _free(self) -> bool:
        workers = self.capacity.workers
        return workers is None or self.busy.value < workers

    def _hand_off(self) -> None:
        while self._waiting and self._free():
            future = self._waiting.popleft()
            if future.done():  # cancelled while queued; its slot was never taken
                continue
            now = self._wall()
            self.queued.add(-1, now)
            self.busy.add(1, now)
            future.set_result(None)

    async def serve(self, extra: float | Callable[[], float], gone: asyncio.Event) -> bool:
        """Queue for a worker, hold it for one service time plus ``extra`` seconds.

        Args:
            extra: Seconds more in the worker (a fault's latency), or a function
                that draws them when the work starts: a fault cleared while a
                request waited does not slow its work.
            gone: Set when the caller disconnects.

        Returns:
            Whether the caller is still there (``False``: the work was wasted).

        Raises:
            Refused: The queue is at its limit.
            Gone: The caller left and the capacity says to notice.
        """
        now = self._wall()
        if self.capacity.workers is not None and (self._waiting or not self._free()):
            limit = self.capacity.queue_limit
            if limit is not None and len(self._waiting) >= limit:
                self._count("refused", now)
                raise Refused
            await self._queue(gone, now)
        else:
            self.busy.add(1, now)
        # The capacity in force when the work starts, not when it arrived.
        started = self._wall()
        self._count("admitted", started)
        try:
            seconds = self._service_time(self.capacity) + (extra() if callable(extra) else extra)
            if self.capacity.notice_disconnect:
                await _unless_gone(self._sleep(seconds), gone)
            else:
                await self._sleep(seconds)
        except Gone:
            end = self._wall()
            self._count("abandoned", end)
            self._waste(started, end)
            raise
        finally:
            self.busy.add(-1, self._wall())
            self._hand_off()
        end = self._wall()
        if gone.is_set():
            self._count("wasted", end)
            self._waste(started, end)
            return False
        self._count("completed", end)
        return True

    def _waste(self, started: float, end: float) -> None:
        # max(0, ...): the wall clock may have been set back meanwhile.
        self.wasted_seconds[math.floor(end)] += max(0.0, end - started)
        _forget(self.wasted_seconds, end)

    async def _queue(self, gone: asyncio.Event, now: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self.queued.add(1, now)
        try:
            if self.capacity.notice_disconnect:
                await _unless_gone(asyncio.shield(future), gone)
            else:
                await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed a worker in the same instant it gave up: give it back.
                self.busy.add(-1, self._wall())
                self._count("abandoned", self._wall())
                self._hand_off()
            else:
                future.cancel()
                self._remove(future)
            raise

    def _remove(self, future: asyncio.Future[None]) -> None:
        try:
            self._waiting.remove(future)
        except ValueError:
            return
        now = self._wall()
        self.queued.add(-1, now)
        self._count("abandoned", now)

    def flush(self) -> int:
        """Refuse every queued request (each answers 503); return how many."""
        n = 0
        now = self._wall()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(Refused())
                self._count("refused", now)
                n += 1
        self.queued.add(-self.queued.value, now)
        return n

    def reset(self, capacity: Capacity) -> int:
        """Refuse the queue, go back to ``capacity``, and forget the figures so far.

        Work already running goes on, counted from now on: after a reset the
        workers busy are still busy, and the pool is never over its size.

        Returns:
            How many queued requests were refused.
        """
        flushed = self.flush()
        self.configure(capacity)
        now = self._wall()
        busy = self.busy.value
        self.busy = Level(now)
        self.busy.add(busy, now)
        self.queued = Level(now)
        for counter in self.counts.values():
            counter.clear()
        self.wasted_seconds.clear()
        return flushed

    def _service_time(self, capacity: Capacity) -> float:
        base = capacity.service_time + (capacity.jitter * self._random() if capacity.jitter else 0)
        seconds = base * capacity.scale
        if capacity.contention:
            slowdown = min(1 + capacity.contention * len(self._waiting), capacity.max_slowdown)
            seconds *= slowdown
        return seconds

    def figures(self) -> dict[str, Any]:
        """Per second so far: ``[second, value]`` rows of every figure, and the levels now."""
        now = self._wall()
        busy_mean, busy_peak = self.busy.series(now)
        queue_mean, queue_peak = self.queued.series(now)

        def rows(values: Mapping[int, float]) -> list[list[float]]:
            return [[s, round(v, 3)] for s, v in sorted(values.items())]

        return {
            "capacity": self.capacity.to_mapping(),
            "busy_now": self.busy.value,
            "queue_now": len(self._waiting),
            "busy": rows(busy_mean),
            "busy_peak": rows(busy_peak),
            "queue": rows(queue_mean),
            "queue_peak": rows(queue_peak),
            **{kind: rows(counter) for kind, counter in self.counts.items()},
            "wasted_seconds": rows(self.wasted_seconds),
        }


async def read_body(receive: Any) -> bytes | None:
    """Read an ASGI request's whole body; ``None`` if the caller disconnected before its end."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def watch_disconnect(receive: Any, gone: asyncio.Event) -> None:
    """Set ``gone`` when the caller disconnects (the body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def replay(body: bytes, receive: Any) -> Any:
    """Return a ``receive`` that gives the app the body read already, then the real channel."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return again


async def swallow(message: dict[str, Any]) -> None:
    """An ASGI ``send`` that drops what it is given (an answer nobody will read)."""
    return


#: Paths a WorkStage never holds a worker for: probes, metrics, the admin API, docs.
STAGE_EXEMPT = ("/healthz", "/readyz", "/startupz", "/metrics", "/_admin", "/docs", "/openapi")


class WorkStage:
    """ASGI middleware: each request first holds one of ``workers`` for a service time.

    The reference service's own work (parsing, checks, rendering: what a
    Python service spends its event loop and its pools on) as a capacity of
    its own, for the overload scenario. With unlimited capacity (the
    default) it only passes requests on. A caller that gives up while its
    request waits or works wastes that work (unless the capacity notices
    disconnects); the request then goes no further.
    """

    def __init__(self, app: Any, workers: Workers, exempt: tuple[str, ...] = STAGE_EXEMPT) -> None:
        self.app = app
        self.workers = workers
        self.exempt = exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        workers = self.workers
        if (
            scope["type"] != "http"
            or not workers.capacity.limited
            or scope["path"].startswith(self.exempt)
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        gone = asyncio.Event()
        watch = asyncio.create_task(watch_disconnect(receive, gone))
        try:
            present = await workers.serve(0.0, gone)
        except Refused:
            await _busy(send)
            return
        except Gone:
            return
        finally:
            watch.cancel()
        if present:
            await self.app(scope, replay(body, receive), send)


async def _busy(send: Any) -> None:
    body = b'{"error": "busy"}'
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _unless_gone(awaitable: Any, gone: asyncio.Event) -> None:
    """Await ``awaitable``; raise :class:`Gone` if ``gone`` is set first."""
    work = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        work.cancel()  # our own task was cancelled: the work goes with it
        raise
    finally:
        watch.cancel()
    if work.done():
        work.result()
        return
    work.cancel()
    raise Gone
