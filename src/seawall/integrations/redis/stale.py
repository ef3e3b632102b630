"""Stale caches every replica can read.

:class:`RedisStaleStore` and :class:`AsyncRedisStaleStore`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from seawall import _validate
from seawall._clock import MONOTONIC
from seawall.errors import CircuitOpenError
from seawall.events import (
    LISTENERS,
    Listeners,
)
from seawall.integrations.redis._common import (
    _STALE_GET,
    _STALE_PUT,
    DEFAULT_NAMESPACE,
    DEFAULT_STALE_TTL,
    DEFAULT_TIMEOUT,
    StoreMetrics,
    _async_client,
    _check_common,
    _Health,
    _log,
    _sync_client,
    _text,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import redis.asyncio

    from seawall._clock import Clock


# -- the stale-cache stores -----------------------------------------------------


@dataclass(slots=True)
class _StaleBase:
    """Configuration and health shared by the sync and async stale stores."""

    namespace: str
    ttl_ms: int
    health: _Health
    dropped_logged: bool = field(default=False)

    def key(self, key: str) -> str:
        return f"{self.namespace}:stale:{key}"

    def encode(self, key: str, value: Any) -> str | None:
        try:
            return json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            if not self.dropped_logged:
                self.dropped_logged = True
                _log.warning(
                    "redis stale store %r drops values it cannot encode as JSON (%r: %s); "
                    "later ones are not logged",
                    self.namespace,
                    key,
                    exc,
                )
            return None

    def decode(self, reply: Any) -> tuple[Any, float] | None:
        if not reply:
            return None
        value: object = reply[0]
        age_ms = int(reply[1])
        try:
            return json.loads(_text(value)), max(age_ms, 0) / 1000
        except ValueError:
            return None


def _stale_config(
    namespace: str, ttl: float, timeout: float, clock: Clock | None, listeners: Listeners | None
) -> _StaleBase:
    errors = _check_common(namespace, timeout)
    errors += _validate.duration("ttl", ttl, allow_zero=False)
    _validate.fail_if(errors)
    health = _Health(
        namespace=namespace,
        store="stale",
        base=0.5,
        clock=MONOTONIC if clock is None else clock,
        listeners=LISTENERS if listeners is None else listeners,
    )
    return _StaleBase(namespace, max(1, round(ttl * 1000)), health)


class RedisStaleStore:
    """A :class:`~seawall.fallback.StaleStore` in Redis, shared by every replica.

    Values are stored JSON-encoded with Redis's time of writing, so an age
    means the same on every replica, and expire ``ttl`` seconds after they were
    written (make it at least the ``max_stale`` of the fallbacks using it).
    ``get`` and ``put`` never raise: when Redis fails or is slower than
    ``timeout`` a get is a miss and a put is dropped, logged once per outage;
    the store's own breaker then skips Redis for a moment, so a frozen Redis
    costs one ``timeout`` at most per back-off period.

    Args:
        client: A ``redis.Redis`` (the store builds its own pool from its
            settings) or a ``redis://`` URL.
        namespace: Prefix of every key (``{namespace}:stale:{key}``).
        ttl: Seconds a value is kept after it was written. Default one hour.
        timeout: Seconds any one Redis operation may take. Default 0.05.
        clock: Time source of the store's own breaker and events.
        listeners: Where :class:`StoreUnavailable` / :class:`StoreRecovered` go.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = DEFAULT_STALE_TTL,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self._base = _stale_config(namespace, ttl, timeout, clock, listeners)
        self._client, self._owned = _sync_client(client, float(timeout))
        self._get_script = self._client.register_script(_STALE_GET)
        self._put_script = self._client.register_script(_STALE_PUT)

    def get(self, key: str) -> tuple[Any, float] | None:
        """Return ``(value, age_seconds)`` for ``key``, or ``None`` (also when Redis fails)."""
        reply = self._run(self._get_script, key, ())
        return self._base.decode(reply)

    def put(self, key: str, value: Any) -> None:
        """Remember ``value`` for ``key``, aged 0; dropped when Redis fails."""
        data = self._base.encode(key, value)
        if data is not None:
            self._run(self._put_script, key, (data, self._base.ttl_ms))

    def _run(self, script: Callable[..., Any], key: str, args: tuple[Any, ...]) -> Any:
        health = self._base.health
        try:
            reply = health.guard.call(script, keys=[self._base.key(key)], args=args)
        except CircuitOpenError:
            health.failed(None)
            return None
        except Exception as exc:
            health.failed(exc)
            return None
        health.round_trips += 1
        health.scripts += 1
        health.succeeded()
        return reply

    @property
    def healthy(self) -> bool:
        """Whether the last get or put reached Redis."""
        return self._base.health.healthy

    @property
    def metrics(self) -> StoreMetrics:
        """A snapshot of this store's exchanges with Redis."""
        return self._base.health.metrics()

    def close(self) -> None:
        """Close the store's connections (when it built its own client)."""
        if self._owned:
            self._client.close()


class AsyncRedisStaleStore:
    """The asyncio :class:`RedisStaleStore`: an :class:`~seawall.fallback.AsyncStaleStore`.

    Takes a ``redis.asyncio.Redis`` (or a URL) and the same options;
    ``await aclose()`` closes its connections.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = DEFAULT_STALE_TTL,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self._base = _stale_config(namespace, ttl, timeout, clock, listeners)
        self._timeout = float(timeout)
        self._client, self._owned = _async_client(client, self._timeout)
        self._get_script = self._client.register_script(_STALE_GET)
        self._put_script = self._client.register_script(_STALE_PUT)

    async def aget(self, key: str) -> tuple[Any, float] | None:
        """Return ``(value, age_seconds)`` for ``key``, or ``None`` (also when Redis fails)."""
        reply = await self._run(self._get_script, key, ())
        return self._base.decode(reply)

    async def aput(self, key: str, value: Any) -> None:
        """Remember ``value`` for ``key``, aged 0; dropped when Redis fails."""
        data = self._base.encode(key, value)
        if data is not None:
            await self._run(self._put_script, key, (data, self._base.ttl_ms))

    async def _run(
        self, script: Callable[..., Awaitable[Any]], key: str, args: tuple[Any, ...]
    ) -> Any:
        health = self._base.health

        async def bounded() -> Any:
            async with asyncio.timeout(3 * self._timeout):
                return await script(keys=[self._base.key(key)], args=args)

        try:
            reply = await health.guard.call_async(bounded)
        except CircuitOpenError:
            health.failed(None)
            return None
        except Exception as exc:
            health.failed(exc)
            return None
        health.round_trips += 1
        health.scripts += 1
        health.succeeded()
        return reply

    @property
    def healthy(self) -> bool:
        """Whether the last get or put reached Redis."""
        return self._base.health.healthy

    @property
    def metrics(self) -> StoreMetrics:
        """A snapshot of this store's exchanges with Redis."""
        return self._base.health.metrics()

    async def aclose(self) -> None:
        """Close the store's connections (when it built its own client)."""
        if self._owned:
            await self._client.aclose()
