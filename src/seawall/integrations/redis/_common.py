"""What the Redis stores share: defaults, snapshots, Lua scripts, clients and store health."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from seawall import _validate
from seawall.breaker import CircuitBreaker
from seawall.core.breaker_state import State
from seawall.core.window import CountWindow, TimeWindow
from seawall.events import (
    Listeners,
    StoreRecovered,
    StoreUnavailable,
)

if TYPE_CHECKING:
    import itertools

    from seawall._clock import Clock


_log = logging.getLogger("seawall.redis")

DEFAULT_NAMESPACE = "seawall"
"""The prefix of every key a store writes, by default."""
DEFAULT_SYNC_INTERVAL = 0.5
"""Seconds between two sync steps: how late a replica may see the fleet."""
DEFAULT_TIMEOUT = 0.05
"""Seconds any one Redis operation of a store may take (socket and connect)."""
DEFAULT_STALE_TTL = 3600.0
"""Seconds a stale-cache value is kept after it was written."""
DEFAULT_FLEET_WINDOW = TimeWindow(10)
"""The fleet's window when the breaker's own is a count window."""

# The store's own breaker backs off from one sync interval to this (seconds).
_MAX_STORE_BACKOFF = 2.0
# State keys live at least this long past their open period (ms).
_MIN_STATE_TTL_MS = 60_000
# Budget keys live at least this long, and at most this long when there is no floor (ms).
_MIN_BUDGET_TTL_MS = 60_000
_MAX_BUDGET_TTL_MS = 3_600_000
# At most one extra sync step this often, however many wake-ups ask for one (seconds).
_MIN_GAP = 0.02

OPEN = State.OPEN
CLOSED = State.CLOSED
HALF_OPEN = State.HALF_OPEN

# Transitions the store itself made (it must not publish them back), and operator
# actions, which stay local to one replica.
_FROM_FLEET_OPEN = "opened by the fleet"
_FROM_FLEET_CLOSE = "closed by the fleet"
_NOT_PUBLISHED = frozenset(
    {_FROM_FLEET_OPEN, _FROM_FLEET_CLOSE, "reset", "forced open", "disabled"}
)


# -- events and snapshots -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    """A snapshot of a store's exchanges with Redis.

    Attributes:
        healthy: Whether the last exchange succeeded.
        operations: Sync steps (breaker store) or get/put calls (stale store)
            that had something to send.
        failures: Those that failed because Redis did not answer in time.
        skipped: Those skipped, without I/O, while the store's own breaker was open.
        round_trips: Pipelines or commands sent to Redis.
        scripts: Lua scripts run by Redis (each is one atomic unit of work).
        outages: Times the store became unavailable.
        unavailable_for: Seconds since it became unavailable; ``None`` while healthy.
        last_error: The type name of the last failure, if any.
    """

    healthy: bool
    operations: int
    failures: int
    skipped: int
    round_trips: int
    scripts: int
    outages: int
    unavailable_for: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FleetView:
    """What the fleet said about one breaker at the last successful sync step.

    Attributes:
        calls: Calls in the fleet's window (every replica's, CLOSED outcomes only).
        failures: Failed calls in it.
        slow_calls: Slow calls in it.
        state: ``"open"`` (when ``open_for <= 0``: probing), ``"closed"``, or
            ``"none"`` when no replica has published anything yet (or Redis
            lost it: replicas then follow their own rules, and republish an open).
        open_for: Seconds the fleet's open period had left (<= 0: it ended).
        generation: Bumped by every published open and close.
        probe_holder: The replica holding the probe lease, or ``None``.
        holding: Whether that replica is this one.
    """

    calls: int
    failures: int
    slow_calls: int
    state: str
    open_for: float
    generation: int
    probe_holder: str | None
    holding: bool


# -- Lua scripts (Redis's clock, one atomic step each) --------------------------

_BREAKER_SYNC = """
-- KEYS: state, probe lease, window.
-- ARGV: replica, calls, failures, slow, slice_ms, slices, window_ttl_ms, state_ttl_ms,
--       publish ('' | 'open' | 'close'), open_ms, expected_gen, lease ('' | 'hold' | 'release'),
--       lease_ms
local state, lease, window = KEYS[1], KEYS[2], KEYS[3]
local me = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Generations are Redis's time in microseconds (and always grow): unique even
-- after Redis lost the key and an episode starts over.
local function next_gen(old)
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return string.format('%.0f', math.max((tonumber(old) or 0) + 1, us))
end

local publish = ARGV[9]
if publish == 'open' then
  -- A new open period, or a longer one (fresh failures); a shorter one changes nothing.
  local cur = redis.call('HMGET', state, 's', 'u', 'g')
  local untl = now + tonumber(ARGV[10])
  if cur[1] ~= 'open' or (tonumber(cur[2]) or 0) < untl then
    redis.call('HSET', state, 's', 'open', 'u', untl, 'g', next_gen(cur[3]), 'r', me)
    redis.call('DEL', lease)
  end
elseif publish == 'close' then
  -- Only a close of the open period this replica saw: a newer open wins.
  local cur = redis.call('HMGET', state, 's', 'g')
  if cur[1] == 'open' and cur[2] == ARGV[11] then
    redis.call('HSET', state, 's', 'closed', 'u', 0, 'g', next_gen(cur[2]), 'r', me)
    redis.call('DEL', lease, window)
  end
end

local slice = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local e = math.floor(now / slice)
local dc, df, ds = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if dc > 0 or df > 0 or ds > 0 then
  if dc > 0 then redis.call('HINCRBY', window, e .. ':c', dc) end
  if df > 0 then redis.call('HINCRBY', window, e .. ':f', df) end
  if ds > 0 then redis.call('HINCRBY', window, e .. ':s', ds) end
  redis.call('PEXPIRE', window, ARGV[7])
  -- Slices that left the window (a whole window's worth, so a gap leaves none).
  local old = {}
  for i = e - 2 * n, e - n do
    old[#old + 1] = i .. ':c'
    old[#old + 1] = i .. ':f'
    old[#old + 1] = i .. ':s'
  end
  redis.call('HDEL', window, unpack(old))
end
local fields = {}
for i = e - n + 1, e do
  fields[#fields + 1] = i .. ':c'
  fields[#fields + 1] = i .. ':f'
  fields[#fields + 1] = i .. ':s'
end
local counts = redis.call('HMGET', window, unpack(fields))
local c, f, s = 0, 0, 0
for i = 1, #counts, 3 do
  c = c + (tonumber(counts[i]) or 0)
  f = f + (tonumber(counts[i + 1]) or 0)
  s = s + (tonumber(counts[i + 2]) or 0)
end

local cur = redis.call('HMGET', state, 's', 'u', 'g')
local left = 0
if cur[1] then
  if cur[1] == 'open' then left = (tonumber(cur[2]) or 0) - now end
  local ttl = tonumber(ARGV[8])
  redis.call('PEXPIRE', state, math.max(ttl, left + ttl))
end

-- Probes only make sense while the fleet is open (or probing): no lease otherwise.
local holder = redis.call('GET', lease)
if ARGV[12] == 'hold' and cur[1] == 'open' then
  if not holder then
    redis.call('SET', lease, me, 'PX', ARGV[13])
    holder = me
  elseif holder == me then
    redis.call('PEXPIRE', lease, ARGV[13])
  end
elseif ARGV[12] ~= '' and holder == me then
  redis.call('DEL', lease)
  holder = false
end
return {c, f, s, cur[1] or 'none', left, tonumber(cur[3]) or 0, holder or ''}
"""

_BUDGET_SYNC = """
-- KEYS: bucket. ARGV: deposits, ratio, min_per_second, capacity, give_back, want, ttl_ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[4])
local cur = redis.call('HMGET', KEYS[1], 'b', 't')
local b = tonumber(cur[1]) or cap
local elapsed = math.max(0, now - (tonumber(cur[2]) or now))
b = b + tonumber(ARGV[1]) * tonumber(ARGV[2]) + elapsed * tonumber(ARGV[3]) + tonumber(ARGV[5])
b = math.min(cap, b)
local grant = math.max(0, math.min(tonumber(ARGV[6]), math.floor(b + 1e-9)))
b = math.max(0, b - grant)
redis.call('HSET', KEYS[1], 'b', string.format('%.6f', b), 't', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {grant, string.format('%.6f', b)}
"""

_STALE_PUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_STALE_GET = """
local cur = redis.call('HMGET', KEYS[1], 'v', 't')
if not cur[1] then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {cur[1], now - (tonumber(cur[2]) or now)}
"""

_SCRIPTS = {"breaker": _BREAKER_SYNC, "budget": _BUDGET_SYNC}
_SHAS = {
    name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
    for name, src in _SCRIPTS.items()
}


# -- small helpers --------------------------------------------------------------


def _position(counter: itertools.count[int]) -> int:
    """Read an :func:`itertools.count`'s next value without taking it ("count(N)")."""
    return int(repr(counter)[6:-1])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _new_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# Connection settings that the store sets itself, or that belong to the given pool.
_NOT_COPIED = frozenset(
    {
        "retry",
        "retry_on_error",
        "socket_timeout",
        "socket_connect_timeout",
        "decode_responses",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "himport_registry",
    }
)


def _tight_kwargs(given: dict[str, Any], timeout: float) -> dict[str, Any]:
    kwargs = {k: v for k, v in given.items() if k not in _NOT_COPIED and not k.startswith("orig_")}
    kwargs["socket_timeout"] = timeout
    if "socket_connect_timeout" in given:  # TCP connections only
        kwargs["socket_connect_timeout"] = timeout
    kwargs["decode_responses"] = True
    return kwargs


def _sync_client(client: redis.Redis | str, timeout: float) -> tuple[redis.Redis, bool]:
    """Return a client with the store's timeouts and no retries, and whether the store owns it."""
    if isinstance(client, str):
        return (
            redis.Redis.from_url(
                client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            ),
            True,
        )
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return client, False
    kwargs = _tight_kwargs(pool.connection_kwargs, timeout)
    own = redis.ConnectionPool(
        connection_class=pool.connection_class,
        retry=Retry(NoBackoff(), 0),
        **kwargs,
    )
    return redis.Redis.from_pool(own), True


def _async_client(
    client: redis.asyncio.Redis | str, timeout: float
) -> tuple[redis.asyncio.Redis, bool]:
    """Return the asyncio twin of :func:`_sync_client`'s client."""
    if isinstance(client, str):
        return (
            redis.asyncio.Redis.from_url(
                client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=AsyncRetry(NoBackoff(), 0),
                decode_responses=True,
            ),
            True,
        )
    pool = client.connection_pool
    plain = (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)
    if type(pool) not in plain:
        return client, False
    kwargs = _tight_kwargs(pool.connection_kwargs, timeout)
    own = redis.asyncio.ConnectionPool(
        connection_class=pool.connection_class,
        retry=AsyncRetry(NoBackoff(), 0),
        **kwargs,
    )
    return redis.asyncio.Redis.from_pool(own), True


def _check_common(namespace: object, timeout: object) -> list[str]:
    errors = []
    if not isinstance(namespace, str) or not namespace:
        errors.append(f"namespace must be a non-empty string, got {namespace!r}")
    errors += _validate.duration("timeout", timeout, allow_zero=False)
    return errors


class _Health:
    """Whether a store's Redis answers: its own breaker, counters and events."""

    __slots__ = (
        "_down_since",
        "_known",
        "_listeners",
        "_lock",
        "_namespace",
        "_now",
        "_store",
        "failures",
        "guard",
        "healthy",
        "last_error",
        "operations",
        "outages",
        "round_trips",
        "scripts",
        "skipped",
    )

    def __init__(
        self, *, namespace: str, store: str, base: float, clock: Clock, listeners: Listeners
    ) -> None:
        cap = max(base, _MAX_STORE_BACKOFF)

        def backoff(n: int) -> float:
            return float(min(base * 2 ** min(n - 1, 16), cap))

        # One failed exchange opens it: a store that missed one answer is
        # likely to miss the next, and the calls do not need it.
        self.guard = CircuitBreaker(
            f"seawall.redis.{namespace}.{store}",
            failure_rate_threshold=1.0,
            window=CountWindow(1),
            minimum_calls=1,
            open_duration=backoff,
            half_open_calls=1,
            clock=clock,
            listeners=Listeners(),
        )
        self._namespace = namespace
        self._store = store
        self._now = clock.monotonic
        self._listeners = listeners
        self._lock = threading.Lock()
        self.healthy = False
        self._known = False
        self._down_since: float | None = None
        self.operations = self.failures = self.skipped = 0
        self.round_trips = self.scripts = self.outages = 0
        self.last_error: str | None = None

    def succeeded(self) -> None:
        event = None
        with self._lock:
            self.operations += 1
            if not self.healthy:
                if self._known and self._down_since is not None:
                    down_for = self._now() - self._down_since
                    event = StoreRecovered(
                        name=self._namespace, at=self._now(), store=self._store, down_for=down_for
                    )
                self.healthy = True
                self._known = True
                self._down_since = None
        if event is not None:
            _log.info(
                "redis %s store %r answers again after %.3fs; sharing resumes",
                self._store,
                self._namespace,
                event.down_for,
            )
            self._listeners.emit(event)

    def failed(self, exc: BaseException | None) -> None:
        """Count a failed (``exc``) or skipped (``None``) exchange."""
        event = None
        with self._lock:
            self.operations += 1
            if exc is None:
                self.skipped += 1
            else:
                self.failures += 1
                self.last_error = type(exc).__name__
            if self.healthy or not self._known:
                self.healthy = False
                self._known = True
                self.outages += 1
                self._down_since = self._now()
                event = StoreUnavailable(
                    name=self._namespace,
                    at=self._down_since,
                    store=self._store,
                    error=self.last_error or "CircuitOpenError",
                )
        if event is not None:
            _log.warning(
                "redis %s store %r is unavailable (%s); policies use local state",
                self._store,
                self._namespace,
                event.error,
            )
            self._listeners.emit(event)

    def metrics(self) -> StoreMetrics:
        with self._lock:
            since = self._down_since
            return StoreMetrics(
                healthy=self.healthy,
                operations=self.operations,
                failures=self.failures,
                skipped=self.skipped,
                round_trips=self.round_trips,
                scripts=self.scripts,
                outages=self.outages,
                unavailable_for=None if since is None else self._now() - since,
                last_error=self.last_error,
            )
