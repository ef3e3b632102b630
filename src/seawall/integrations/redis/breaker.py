"""Breaker state shared by a fleet through Redis.

:class:`RedisBreakerStore` (a thread) and :class:`AsyncRedisBreakerStore` (a task).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any, Self

import redis
from redis.exceptions import NoScriptError

from seawall import _validate
from seawall._clock import MONOTONIC
from seawall.core.window import TimeWindow
from seawall.errors import CircuitOpenError
from seawall.events import (
    LISTENERS,
    Listeners,
)
from seawall.integrations.redis._common import (
    _MIN_GAP,
    _SCRIPTS,
    _SHAS,
    DEFAULT_NAMESPACE,
    DEFAULT_SYNC_INTERVAL,
    DEFAULT_TIMEOUT,
    FleetView,
    StoreMetrics,
    _async_client,
    _check_common,
    _Health,
    _log,
    _sync_client,
)
from seawall.integrations.redis._sync import (
    _Fleet,
    _Op,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import redis.asyncio

    from seawall._clock import Clock
    from seawall.breaker import CircuitBreaker


# -- the breaker stores ---------------------------------------------------------


class _BreakerStore:
    """What both breaker stores share: configuration, sharing, budgets and metrics."""

    def __init__(
        self,
        *,
        namespace: str,
        sync_interval: float,
        timeout: float,
        fleet_window: TimeWindow | None,
        probe_lease: float | None,
        clock: Clock | None,
        listeners: Listeners | None,
    ) -> None:
        errors = _check_common(namespace, timeout)
        errors += _validate.duration("sync_interval", sync_interval, allow_zero=False)
        if probe_lease is not None:
            errors += _validate.duration("probe_lease", probe_lease, allow_zero=False)
        window: object = fleet_window
        if window is not None and not isinstance(window, TimeWindow):
            errors.append(f"fleet_window must be a TimeWindow, got {window!r}")
        _validate.fail_if(errors)
        self.namespace = namespace
        self.sync_interval = float(sync_interval)
        self.timeout = float(timeout)
        clock = MONOTONIC if clock is None else clock
        health = _Health(
            namespace=namespace,
            store="breakers",
            base=self.sync_interval,
            clock=clock,
            listeners=LISTENERS if listeners is None else listeners,
        )
        self._fleet = _Fleet(
            namespace=namespace,
            sync_interval=self.sync_interval,
            timeout=self.timeout,
            fleet_window=fleet_window,
            probe_lease=probe_lease,
            health=health,
            wake=self._wake,
        )

    def _wake(self) -> None:
        raise NotImplementedError

    @property
    def replica_id(self) -> str:
        """The name of this replica in the fleet (host, pid and a random suffix)."""
        return self._fleet.replica_id

    def share(self, breaker: CircuitBreaker) -> Callable[[], None]:
        """Share ``breaker``'s state with every replica sharing one of the same name.

        The breaker keeps deciding locally; the sync step tells the fleet about
        its transitions and outcomes and applies what the fleet says.

        Returns:
            A function that stops sharing it (the breaker goes on alone).

        Raises:
            ConfigError: It is not a CircuitBreaker, or one of that name is
                already shared through this store.
        """
        return self._fleet.share(breaker)

    def fleet_view(self, name: str) -> FleetView | None:
        """Return what the fleet said about breaker ``name`` at the last sync step, if anything."""
        entry = self._fleet.entries.get(name)
        return None if entry is None else entry.view

    @property
    def healthy(self) -> bool:
        """Whether the last sync step reached Redis (false before the first one)."""
        return self._fleet.health.healthy

    @property
    def metrics(self) -> StoreMetrics:
        """A snapshot of this store's exchanges with Redis."""
        return self._fleet.health.metrics()


class RedisBreakerStore(_BreakerStore):
    """Share circuit breakers and retry budgets across replicas, synced by a daemon thread.

    Works for sync and asyncio applications alike: the calls never touch it;
    only the background thread talks to Redis.

    Args:
        client: A ``redis.Redis`` (the store builds its own pool from its
            settings) or a ``redis://`` URL.
        namespace: Prefix of every key. Default ``"seawall"``.
        sync_interval: Seconds between sync steps: how late a replica may see
            the fleet. Default 0.5.
        timeout: Seconds any one Redis operation may take. Default 0.05.
        fleet_window: The fleet's time-sliced window. Default: the breaker's
            own window if it is a :class:`TimeWindow`, else ``TimeWindow(10)``.
        probe_lease: Seconds a probe lease lasts without renewal (the holder
            renews it every step). Default ``max(1, 4 * sync_interval)``.
        clock: Time source of the store's own breaker and events.
        listeners: Where :class:`StoreUnavailable` / :class:`StoreRecovered`
            go; defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: An option is out of range; the message names each one.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        fleet_window: TimeWindow | None = None,
        probe_lease: float | None = None,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        super().__init__(
            namespace=namespace,
            sync_interval=sync_interval,
            timeout=timeout,
            fleet_window=fleet_window,
            probe_lease=probe_lease,
            clock=clock,
            listeners=listeners,
        )
        self._client, self._owned = _sync_client(client, self.timeout)
        self._tick_lock = threading.Lock()
        self._wake_event = threading.Event()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def _wake(self) -> None:
        self._wake_event.set()

    def start(self) -> None:
        """Start the background sync thread (a daemon); a no-op if it runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"seawall-redis-{self.namespace}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the sync thread, give every breaker its local probing back, close connections."""
        self._stop_event.set()
        self._wake_event.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(5.0, 4 * self.timeout))
        self._fleet.open_gates()
        if self._owned:
            self._client.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        clock = MONOTONIC.monotonic
        while not self._stop_event.is_set():
            started = clock()
            try:
                self.sync_once()
            except Exception:  # a bug must not kill the thread: the next step may work
                _log.exception("redis store %r: sync step failed", self.namespace)
            self._wake_event.wait(max(0.0, self.sync_interval - (clock() - started)))
            self._wake_event.clear()
            rest = started + _MIN_GAP - clock()
            if rest > 0:
                self._stop_event.wait(rest)

    def sync_once(self) -> bool:
        """Run one sync step now (the thread does this every ``sync_interval``).

        Returns:
            Whether Redis answered (``True`` also when nothing is shared).
        """
        with self._tick_lock:
            fleet = self._fleet
            ops = fleet.prepare()
            if not ops:
                return True
            try:
                replies = fleet.health.guard.call(self._exchange, ops)
            except CircuitOpenError:
                fleet.failed(ops, None)
                return False
            except Exception as exc:
                fleet.failed(ops, exc)
                return False
            fleet.succeeded(ops, replies)
            return True

    def _exchange(self, ops: list[_Op]) -> list[Any]:
        replies = self._pipeline(ops)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # Redis restarted or its script cache was flushed: load, send those again.
            pipe = self._client.pipeline(transaction=False)
            for source in _SCRIPTS.values():
                pipe.script_load(source)
            pipe.execute()
            self._fleet.health.round_trips += 1
            again = self._pipeline([ops[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    def _pipeline(self, ops: list[_Op]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for op in ops:
            pipe.evalsha(_SHAS[op.script], len(op.keys), *op.keys, *op.args)
        replies = pipe.execute(raise_on_error=False)
        health = self._fleet.health
        health.round_trips += 1
        health.scripts += len(ops)
        return replies


class AsyncRedisBreakerStore(_BreakerStore):
    """The asyncio variant of :class:`RedisBreakerStore`: the sync step is a task.

    Takes a ``redis.asyncio.Redis`` (or a URL) and the same options. Use
    ``await start()`` / ``await stop()`` or ``async with store:``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        fleet_window: TimeWindow | None = None,
        probe_lease: float | None = None,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        super().__init__(
            namespace=namespace,
            sync_interval=sync_interval,
            timeout=timeout,
            fleet_window=fleet_window,
            probe_lease=probe_lease,
            clock=clock,
            listeners=listeners,
        )
        self._client, self._owned = _async_client(client, self.timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def _wake(self) -> None:
        # Observers run in any thread: hand the wake-up to the loop.
        loop, event = self._loop, self._wake_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(event.set)

    async def start(self) -> None:
        """Start the sync task on the running loop; a no-op if it runs."""
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"seawall-redis-{self.namespace}")

    async def stop(self) -> None:
        """Stop the sync task, give every breaker its local probing back, close connections."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None
        self._fleet.open_gates()
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        event = self._wake_event
        assert event is not None  # noqa: S101 - set by start()
        while True:
            started = loop.time()
            try:
                await self.sync_once()
            except Exception:  # a bug must not kill the task: the next step may work
                _log.exception("redis store %r: sync step failed", self.namespace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self.sync_interval - (loop.time() - started))):
                    await event.wait()
            event.clear()
            rest = started + _MIN_GAP - loop.time()
            if rest > 0:
                await asyncio.sleep(rest)

    async def sync_once(self) -> bool:
        """Run one sync step now (the task does this every ``sync_interval``).

        Returns:
            Whether Redis answered (``True`` also when nothing is shared).
        """
        fleet = self._fleet
        ops = fleet.prepare()
        if not ops:
            return True
        try:
            replies = await fleet.health.guard.call_async(self._exchange, ops)
        except CircuitOpenError:
            fleet.failed(ops, None)
            return False
        except Exception as exc:
            fleet.failed(ops, exc)
            return False
        fleet.succeeded(ops, replies)
        return True

    async def _exchange(self, ops: list[_Op]) -> list[Any]:
        # Socket timeouts bound each read; this bounds the whole step (connect,
        # write, read) however the connection misbehaves.
        async with asyncio.timeout(3 * self.timeout):
            replies = await self._pipeline(ops)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                pipe = self._client.pipeline(transaction=False)
                for source in _SCRIPTS.values():
                    pipe.script_load(source)
                await pipe.execute()
                self._fleet.health.round_trips += 1
                again = await self._pipeline([ops[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            return replies

    async def _pipeline(self, ops: list[_Op]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for op in ops:
            pipe.evalsha(_SHAS[op.script], len(op.keys), *op.keys, *op.args)
        replies = await pipe.execute(raise_on_error=False)
        health = self._fleet.health
        health.round_trips += 1
        health.scripts += len(ops)
        return replies
