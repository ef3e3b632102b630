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

from seawall.events import StoreRecovered, StoreUnavailable
from seawall.integrations.redis._common import (
    DEFAULT_NAMESPACE,
    DEFAULT_STALE_TTL,
    DEFAULT_SYNC_INTERVAL,
    DEFAULT_TIMEOUT,
    FleetView,
    StoreMetrics,
)
from seawall.integrations.redis.breaker import AsyncRedisBreakerStore, RedisBreakerStore
from seawall.integrations.redis.budget import RedisRetryBudget
from seawall.integrations.redis.stale import AsyncRedisStaleStore, RedisStaleStore

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
