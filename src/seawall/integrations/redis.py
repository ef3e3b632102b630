"""Past one machine: breaker state, a retry budget and a stale cache shared through Redis.

A fleet of replicas that each learn on their own that a dependency is down
sends it as many probes and retries as there are replicas. A
:class:`RedisBreakerStore` (threads) or :class:`AsyncRedisBreakerStore`
(asyncio) lets them share what they learn, without putting Redis on the path of
any call::

    store = RedisBreakerStore(redis.Redis.from_url(url))
    store.share(payment_breaker)
    budget = RedisRetryBudget(store, "payment", ratio=0.1)   # for Retry(budget=...)
    store.start()                     # a daemon thread syncs every sync_interval
    ...
    store.stop()

**No I/O on the call path.** Every breaker keeps deciding alone, from its own
window, exactly as without a store. A background *sync step* (every
``sync_interval``, and at once after a local transition) sends one pipelined
round trip to Redis holding one Lua script per shared breaker and per budget.
For a breaker the script:

1. publishes a local transition, if one happened: OPEN (with the time it has
   left; a running fleet open period is only ever lengthened) or CLOSED (only
   if the fleet is still in the open period this replica last saw, a
   compare-and-set on a generation number);
2. adds this replica's new outcomes (differences of
   :meth:`~seawall.core.breaker_state.BreakerState.lifetime_counts`) to the
   current slice of the fleet's time-sliced window;
3. takes, renews or releases the fleet's *probe lease* (held only while the
   fleet is open or probing);
4. returns the fleet's window counts, state, time left open, generation and
   lease holder.

The replica then adopts what the fleet says: an open it has not seen yet
opens it (``fleet_open``), a close it has not seen closes it
(``fleet_close``), fleet counts that reach the breaker's own thresholds
(``verdict``) open it and are published; and it closes its *probe gate* unless
it holds the lease, so only one replica sends probes in a probe period and the
recovering service sees ``half_open_calls`` probes from the whole fleet, not
that many per replica. A replica asks for the lease only when it has traffic
to probe with (calls were rejected since the last step), and lets it go when it
stops using it, so an idle replica cannot hold the fleet half-open.

**Keys** (``ns`` is the namespace, ``{name}`` a Redis hash tag, so one
breaker's keys share a cluster slot)::

    ns:breaker:{name}:state    hash: s (open|closed), u (until, Redis ms), g (generation),
                               r (replica that wrote it)
    ns:breaker:{name}:window   hash: <slice>:c|f|s -> calls, failures, slow calls per time slice
    ns:breaker:{name}:probe    string: the replica holding the probe lease (SET NX PX)
    ns:budget:{name}           hash: b (tokens), t (last refill, Redis seconds)
    ns:stale:<key>             hash: v (JSON value), t (stored at, Redis ms)

Every key has an expiry, refreshed while it is in use: the window one window
length and a slice after its last write (old slices are also deleted as they
leave it), the state at least ``max(60 s, 2 windows)`` past its open period,
the lease ``probe_lease``, a budget once its bucket would have refilled, a
stale value ``ttl``. Nothing grows without bound.

**Consistency: what a replica may see late.**

* An open: the replica that opens publishes at once (its transition wakes the
  sync step); every other replica adopts it at its next step, so within one
  ``sync_interval`` plus a round trip. Until then they keep calling.
* Counts: a replica's outcomes reach the fleet window at its next step, so
  the fleet window lags by up to one ``sync_interval``, and an open decided
  on fleet counts comes up to one interval after the counts crossed the
  threshold (at the first replica whose step sees them).
* A close: the lease holder publishes at once when its probes succeed; the
  others close at their next step (up to one interval of needless rejections).
* Probes: while Redis answers, at most ``half_open_calls`` per probe period
  from the whole fleet. If the lease holder dies, the lease expires after
  ``probe_lease`` and a replica with traffic takes it.
* Time: fleet times are Redis's clock (``TIME`` inside the scripts). Replicas
  exchange *durations* ("open for 8.2 s more"), converted on arrival to their
  own monotonic clock, so their wall clocks may disagree by any amount; an
  open period ends on each replica within one round trip of the fleet's
  end. Only a step of the Redis host's own clock moves open periods.
* Operator controls (``force_open``, ``disable``, ``reset``) act on one
  replica and are not published.

**When Redis is slow, down, frozen or partitioned away.** Every Redis
operation has its own tight ``timeout`` (socket and connect) and no retries, on
a private connection pool, and goes through the store's own circuit breaker: a
step against an unresponsive Redis costs the background thread at most one
``timeout`` (connect plus read, for a new connection), then the store's breaker
skips steps, backing off from ``sync_interval`` to a few seconds, until one
probe step succeeds. Calls never wait on any of it. While unreachable, the
store emits :class:`StoreUnavailable` (and :attr:`~RedisBreakerStore.healthy`
is false), opens every probe gate (each replica probes on its own again, as a
lone breaker does), and counts seen during failed steps stay local (sending
them later would pile old outcomes into one slice). When Redis answers again
it emits :class:`StoreRecovered`, publishes a local transition that still holds
(still OPEN: its remaining time; CLOSED: only if the fleet is still in the
episode this replica last saw), and sharing resumes. In a partition each side
decides with what it sees: replicas that reach Redis share, the others act
alone (a retry budget's floor and burst then hold per replica cut off, not for
the fleet). A Redis restart that lost the keys reads as "no fleet state":
replicas follow their own rules and publish again a circuit they hold open;
generations are Redis's time in microseconds, so a new episode never reuses an
old one's number. Scripts are loaded again on ``NOSCRIPT``.

**Retry budget.** :class:`RedisRetryBudget` is one token bucket for the
fleet. ``deposit()`` is an in-process counter and ``try_withdraw()`` takes a
token from a small *pocket* leased from the fleet bucket by the sync step, so
neither makes a round trip (a retry inside an event loop never blocks on
Redis). The pocket is sized to the retries asked for in the last interval;
surplus tokens go back. An empty pocket refuses and, if the fleet had tokens
at the last step, wakes the sync step to refill it. While Redis is
unreachable, an empty pocket falls back to a local
:class:`~seawall.core.budget.RetryBudget` with the same settings.

**Stale cache.** :class:`RedisStaleStore` and :class:`AsyncRedisStaleStore`
keep DEGRADABLE dependencies' last good values, JSON-encoded, with Redis's
time of writing, so ages agree across replicas. They never raise: a failure is
a miss or a dropped write, logged once per outage, and they have the same tight
timeout and breaker.

The store builds its own client from the one it is given (same address,
credentials and TLS; its own pool, timeouts and no retries), so the given
client is left as it was; ``stop()`` / ``close()`` close the store's own. A
client on another kind of pool (Sentinel, cluster) is used as it is: give it
tight timeouts and no retries yourself.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from seawall import _validate
from seawall._clock import MONOTONIC
from seawall.breaker import CircuitBreaker
from seawall.core.breaker_state import State
from seawall.core.budget import DEFAULT_MIN_PER_SECOND, DEFAULT_RATIO, RetryBudget
from seawall.core.window import CountWindow, TimeWindow
from seawall.errors import CircuitOpenError
from seawall.events import (
    LISTENERS,
    Listeners,
    StateChanged,
    StoreRecovered,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from seawall._clock import Clock
    from seawall.core.breaker_state import BreakerState

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_STALE_TTL",
    "DEFAULT_SYNC_INTERVAL",
    "DEFAULT_TIMEOUT",
    "AsyncRedisBreakerStore",
    "AsyncRedisStaleStore",
    "FleetView",
    "RedisBreakerStore",
    "RedisRetryBudget",
    "RedisStaleStore",
    "StoreMetrics",
    "StoreRecovered",
    "StoreUnavailable",
]

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


# -- the sans-IO sync step -----------------------------------------------------


@dataclass(slots=True)
class _Op:
    """One script call of a sync step, and what its owner needs to apply the reply."""

    script: Literal["breaker", "budget"]
    keys: tuple[str, ...]
    args: tuple[str | int | float, ...]
    owner: _SharedBreaker | _SharedBudget
    sent_at: float = 0.0
    publish: str = ""
    give_back: int = 0


def _open_duration(breaker: CircuitBreaker) -> float:
    """Return the open duration the breaker would choose for its next opening."""
    core = breaker._core
    schedule = breaker.config.open_duration
    if not callable(schedule):
        return float(schedule)
    try:
        value = float(schedule(core._openings + 1))
    except Exception:
        return core._open_duration
    return value if math.isfinite(value) and value >= 0 else core._open_duration


class _SharedBreaker:
    """One breaker shared through the store: its keys and what it last told and heard."""

    __slots__ = (
        "applied_gen",
        "breaker",
        "core",
        "dirty",
        "fleet",
        "holding",
        "keys",
        "last_demand",
        "last_rejected",
        "last_totals",
        "lease_ms",
        "remove_observer",
        "slice_ms",
        "slices",
        "state_ttl_ms",
        "view",
        "window_ttl_ms",
    )

    def __init__(self, fleet: _Fleet, breaker: CircuitBreaker) -> None:
        core = breaker._core
        self.fleet = fleet
        self.breaker = breaker
        self.core: BreakerState = core
        tag = f"{fleet.namespace}:breaker:{{{breaker.name}}}"
        self.keys = (f"{tag}:state", f"{tag}:probe", f"{tag}:window")
        own = breaker.config.window
        window = fleet.fleet_window or (
            own if isinstance(own, TimeWindow) else DEFAULT_FLEET_WINDOW
        )
        self.slices = window.buckets
        self.slice_ms = max(1, round(window.seconds * 1000 / window.buckets))
        self.window_ttl_ms = self.slice_ms * (self.slices + 1)
        self.state_ttl_ms = max(_MIN_STATE_TTL_MS, 2 * self.window_ttl_ms)
        lease = fleet.probe_lease
        self.lease_ms = max(1, round(1000 * (lease if lease is not None else fleet.default_lease)))
        # Outcomes recorded before sharing stay local: the fleet hears from now on.
        self.last_totals = core.lifetime_counts()
        self.last_rejected = _position(core._rejections)
        self.last_demand = -math.inf
        self.applied_gen: int | None = None
        self.holding = False
        self.view: FleetView | None = None
        # An open circuit is news for the fleet.
        self.dirty = core.state is OPEN
        self.remove_observer = core.add_observer(self._observe)

    def _observe(self, event: StateChanged) -> None:
        # Runs in whichever thread made the transition: a flag and a wake-up only.
        if event.reason in _NOT_PUBLISHED:
            return
        if event.new is OPEN or event.new is CLOSED:
            self.dirty = True
            self.fleet.wake()

    def prepare(self) -> _Op:
        core = self.core
        publish, open_ms = "", 0
        if self.dirty:
            self.dirty = False  # before reading the state: a later move sets it again
            state = core.state
            now = core._now()
            if state is OPEN:
                publish = "open"
                open_ms = max(1, math.ceil((core.open_until - now) * 1000))
            elif state is CLOSED:
                publish = "close"
        else:
            state = core.state
            now = core._now()
        calls, failures, slow = core.lifetime_counts()
        last_calls, last_failures, last_slow = self.last_totals
        self.last_totals = (calls, failures, slow)
        rejected = _position(core._rejections)
        demand = rejected != self.last_rejected
        self.last_rejected = rejected
        if demand:
            self.last_demand = now
        # A holder keeps the lease while calls came within its lifetime: at a
        # few calls a second, a sync step often sees none, and letting go then
        # would hand the lease around without any replica ever probing.
        recent = now - self.last_demand < self.lease_ms / 1000
        # Ask for the lease a little before the open period ends, so probes can
        # start the moment it does.
        near = state is HALF_OPEN or (
            state is OPEN and core.open_until - now <= self.fleet.lookahead
        )
        # Renew while using it (a probe in flight, or calls waiting); an idle
        # holder lets go, so a replica with traffic can probe instead.
        probing = state is HALF_OPEN and core.probes_in_flight > 0
        if publish == "open":
            lease = ""  # a new open period frees the lease; ask again when it nears its end
        elif near and (demand or (self.holding and (probing or recent))):
            lease = "hold"
        elif self.holding:
            lease = "release"
        else:
            lease = ""
        expected = -1 if self.applied_gen is None else self.applied_gen
        args = (
            self.fleet.replica_id,
            calls - last_calls,
            failures - last_failures,
            slow - last_slow,
            self.slice_ms,
            self.slices,
            self.window_ttl_ms,
            self.state_ttl_ms,
            publish,
            open_ms,
            expected,
            lease,
            self.lease_ms,
        )
        return _Op("breaker", self.keys, args, self, sent_at=now, publish=publish)

    def apply(self, op: _Op, reply: Sequence[Any]) -> None:
        calls, failures, slow = int(reply[0]), int(reply[1]), int(reply[2])
        fleet_state, left_ms, gen = _text(reply[3]), int(reply[4]), int(reply[5])
        holder = _text(reply[6]) or None
        self.holding = holder == self.fleet.replica_id
        self.view = FleetView(
            calls, failures, slow, fleet_state, left_ms / 1000, gen, holder, self.holding
        )
        if not self.dirty:  # else a local transition raced this step: it goes first
            self._adopt(op, fleet_state, left_ms, gen, (calls, failures, slow))
        # Only the lease holder probes while the fleet is open or probing. With
        # no fleet episode in progress (the key was lost), local rules apply.
        self.core.set_probe_gate(self.holding or fleet_state != "open")

    def _adopt(
        self, op: _Op, fleet_state: str, left_ms: int, gen: int, counts: tuple[int, int, int]
    ) -> None:
        """Apply what the fleet says to the local breaker."""
        core = self.core
        applied, self.applied_gen = self.applied_gen, gen
        news = gen != applied and op.publish != "open"
        state = core.state
        if fleet_state == "open":
            if (news and state is CLOSED) or (
                # Half-open while the fleet is open: a replica reopened it (a
                # probe failed, fresh failures), or this replica's period ended
                # well before the fleet's. A round trip's worth of difference
                # between the two is not worth a flip.
                state is HALF_OPEN
                and left_ms > 0
                and (news or left_ms > self.fleet.lookahead * 1000)
            ):
                # An open period that already ended means the fleet is probing:
                # a closed replica joins it half-open (the lease decides who probes).
                until = max(op.sent_at + left_ms / 1000, core._now() + 0.001)
                core.fleet_open(until, _FROM_FLEET_OPEN)
            return
        if fleet_state == "closed" and news and state in (OPEN, HALF_OPEN):
            core.fleet_close(_FROM_FLEET_CLOSE)
        elif fleet_state == "none" and state is OPEN:
            # The fleet lost its state (a Redis restart): tell it again.
            self.dirty = True
            self.fleet.wake()
        elif state is CLOSED:
            reason = core.verdict(*counts)
            if reason is not None:
                # Published by the observer, at once, like any local opening.
                core.fleet_open(core._now() + _open_duration(self.breaker), f"fleet {reason}")

    def failed(self, op: _Op) -> None:
        # Counts of a failed step stay local; a transition is published on recovery.
        if op.publish:
            self.dirty = True
        self.core.set_probe_gate(True)

    def unshare(self) -> None:
        self.remove_observer()
        self.core.set_probe_gate(True)


class _SharedBudget:
    """One fleet retry budget: its key and what it last deposited."""

    __slots__ = ("budget", "key", "last_calls", "last_demand", "ttl_ms")

    def __init__(self, fleet: _Fleet, budget: RedisRetryBudget) -> None:
        self.budget = budget
        self.key = f"{fleet.namespace}:budget:{{{budget.name}}}"
        refill = budget.capacity / budget.min_per_second if budget.min_per_second else math.inf
        self.ttl_ms = int(min(_MAX_BUDGET_TTL_MS, max(_MIN_BUDGET_TTL_MS, 2000 * refill)))
        self.last_calls = budget._deposits()
        self.last_demand = _position(budget._demand)

    def prepare(self) -> _Op:
        budget = self.budget
        calls = budget._deposits()
        demand = _position(budget._demand)
        deposits, asked = calls - self.last_calls, demand - self.last_demand
        self.last_calls, self.last_demand = calls, demand
        # Keep enough for the retries asked for in the last interval, and a
        # little more; never less than one ready token.
        target = min(max(1, math.floor(budget.capacity)), max(1, math.ceil(asked * 1.5)))
        with budget._lock:
            give_back = max(0, budget._pocket - target)
            budget._pocket -= give_back
            want = max(0, target - budget._pocket)
        args = (
            deposits,
            repr(budget.ratio),
            repr(budget.min_per_second),
            repr(budget.capacity),
            give_back,
            want,
            self.ttl_ms,
        )
        return _Op("budget", (self.key,), args, self, give_back=give_back)

    def apply(self, op: _Op, reply: Sequence[Any]) -> None:  # noqa: ARG002 - same shape as _SharedBreaker
        budget = self.budget
        with budget._lock:
            budget._pocket += int(reply[0])
            budget._fleet_balance = float(_text(reply[1]))

    def failed(self, op: _Op) -> None:
        # The tokens given back never arrived: keep them. (Deposits of a failed
        # step are lost to the fleet; the local fallback has them.)
        budget = self.budget
        with budget._lock:
            budget._pocket += op.give_back


class _Fleet:
    """The sans-IO part of a breaker store: what one sync step sends and does with the reply."""

    __slots__ = (
        "_lock",
        "_script_errors",
        "budgets",
        "default_lease",
        "entries",
        "fleet_window",
        "health",
        "lookahead",
        "namespace",
        "probe_lease",
        "replica_id",
        "wake",
    )

    def __init__(
        self,
        *,
        namespace: str,
        sync_interval: float,
        timeout: float,
        fleet_window: TimeWindow | None,
        probe_lease: float | None,
        health: _Health,
        wake: Callable[[], None],
    ) -> None:
        self.namespace = namespace
        self.replica_id = _new_replica_id()
        self.fleet_window = fleet_window
        self.probe_lease = probe_lease
        # The holder renews every step; a few steps' grace survives a slow one.
        self.default_lease = max(1.0, 4 * sync_interval)
        self.lookahead = sync_interval + timeout
        self.health = health
        self.wake = wake
        self._lock = threading.Lock()
        self._script_errors: set[str] = set()
        self.entries: dict[str, _SharedBreaker] = {}
        self.budgets: dict[str, _SharedBudget] = {}

    def share(self, breaker: CircuitBreaker) -> Callable[[], None]:
        candidate: object = breaker
        if not isinstance(candidate, CircuitBreaker):
            _validate.fail_if([f"breaker must be a CircuitBreaker, got {candidate!r}"])
        with self._lock:
            if breaker.name in self.entries:
                _validate.fail_if([f"a breaker named {breaker.name!r} is already shared"])
            entry = _SharedBreaker(self, breaker)
            self.entries = {**self.entries, breaker.name: entry}

        def unshare() -> None:
            with self._lock:
                if self.entries.get(breaker.name) is not entry:
                    return
                self.entries = {k: v for k, v in self.entries.items() if v is not entry}
            entry.unshare()

        if entry.dirty:
            self.wake()
        return unshare

    def add_budget(self, budget: RedisRetryBudget) -> None:
        with self._lock:
            if budget.name in self.budgets:
                _validate.fail_if([f"a retry budget named {budget.name!r} is already shared"])
            self.budgets = {**self.budgets, budget.name: _SharedBudget(self, budget)}

    def prepare(self) -> list[_Op]:
        ops = [entry.prepare() for entry in self.entries.values()]
        ops += [budget.prepare() for budget in self.budgets.values()]
        return ops

    def succeeded(self, ops: list[_Op], replies: list[Any]) -> None:
        self.health.succeeded()
        for op, reply in zip(ops, replies, strict=True):
            key = op.keys[0]
            if isinstance(reply, Exception):
                # One script failing (a key of the wrong type, say) is that
                # owner's problem, not the store's: logged once until it works.
                if key not in self._script_errors:
                    self._script_errors.add(key)
                    _log.error(
                        "redis store %r: script for %r failed: %r", self.namespace, key, reply
                    )
                op.owner.failed(op)
                continue
            self._script_errors.discard(key)
            try:
                op.owner.apply(op, reply)
            except Exception:
                _log.exception("redis store %r: applying %r failed", self.namespace, op.keys[0])

    def failed(self, ops: list[_Op], exc: BaseException | None) -> None:
        self.health.failed(exc)
        for op in ops:
            op.owner.failed(op)

    def open_gates(self) -> None:
        """Give every breaker back its local probing (the store is stopping)."""
        for entry in self.entries.values():
            entry.core.set_probe_gate(True)


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


# -- the fleet retry budget -----------------------------------------------------


class RedisRetryBudget:
    """A retry budget for the whole fleet, kept in Redis by a breaker store's sync step.

    Every call deposits ``ratio`` of a token into one bucket for all replicas;
    every retry takes a whole one; ``min_per_second`` and ``capacity`` are the
    fleet's (see :class:`~seawall.core.budget.RetryBudget` for the bound).
    Neither method makes a round trip: ``deposit()`` is one C-level counter
    increment (as cheap as the local budget's), counted into the fleet bucket
    by the next sync step, and retries take tokens from a small pocket that the sync
    step leases from the fleet bucket (sized to the retries asked for in the
    last interval; surplus goes back). An empty pocket refuses and, if the
    fleet had tokens, wakes the sync step to refill it. While Redis is
    unreachable, an empty pocket falls back to a local :class:`RetryBudget`
    with the same settings, that is, per replica.

    Args:
        store: The breaker store whose sync step keeps this budget.
        name: The budget's name; replicas share the budget of the same name.
        ratio: Tokens each call deposits, in [0, 1]. Default 0.1.
        min_per_second: Tokens added per second for the whole fleet. Default 10.
        capacity: The most tokens the fleet bucket holds. Default: 10 seconds
            of ``min_per_second``, at least 1.

    Raises:
        ConfigError: A setting is out of range, or a budget of that name is
            already kept by ``store``.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_calls",
        "_demand",
        "_fallback",
        "_fleet_balance",
        "_lock",
        "_pocket",
        "_refills",
        "_store",
        "capacity",
        "deposit",
        "min_per_second",
        "name",
        "ratio",
    )

    #: Record one call: ``ratio`` of a token, for the fleet and the local fallback.
    deposit: Callable[[], None]

    def __init__(
        self,
        store: RedisBreakerStore | AsyncRedisBreakerStore,
        name: str,
        *,
        ratio: float = DEFAULT_RATIO,
        min_per_second: float = DEFAULT_MIN_PER_SECOND,
        capacity: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            _validate.fail_if([f"name must be a non-empty string, got {name!r}"])
        self._fallback = RetryBudget(ratio, min_per_second, capacity=capacity)  # validates
        self.name = name
        self.ratio = self._fallback.ratio
        self.min_per_second = self._fallback.min_per_second
        self.capacity = self._fallback.capacity
        self._store = store
        self._lock = threading.Lock()
        # One counter serves both: the fallback's own (its deposits), which also
        # takes one number per fallback withdrawal (see RetryBudget); the sync
        # step sends its position less those withdrawals. So a deposit is one
        # C call, with no Python frame, like the local budget's.
        self._calls = self._fallback._calls
        self._refills = 0
        self.deposit = self._calls.__next__  # type: ignore[assignment]  # returns an int, unused
        self._demand = itertools.count()
        self._pocket = 0
        self._fleet_balance: float | None = None
        store._fleet.add_budget(self)

    def try_withdraw(self) -> bool:
        """Take one token for a retry, without I/O; ``False`` (taking nothing) if there is none."""
        next(self._demand)
        with self._lock:
            if self._pocket > 0:
                self._pocket -= 1
                return True
            if self._store.healthy:
                balance = self._fleet_balance
                if balance is None or balance >= 1:
                    self._store._wake()  # the fleet has tokens: refill the pocket soon
                return False
            self._refills += 1
            return self._fallback.try_withdraw()

    def _deposits(self) -> int:
        """Deposits since the budget was built (for the sync step)."""
        with self._lock:
            return _position(self._calls) - self._refills

    @property
    def pocket(self) -> int:
        """Tokens this replica holds, leased from the fleet bucket."""
        return self._pocket

    @property
    def fleet_balance(self) -> float | None:
        """Tokens left in the fleet bucket at the last sync step (``None`` before one)."""
        return self._fleet_balance

    def __repr__(self) -> str:
        return (
            f"RedisRetryBudget({self.name!r}, ratio={self.ratio!r}, "
            f"min_per_second={self.min_per_second!r}, capacity={self.capacity!r})"
        )


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
