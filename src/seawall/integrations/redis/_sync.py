"""The sans-IO sync step: what one round trip sends for each shared breaker and budget.

And what the step does with Redis's answer. No I/O here: the stores' loops
(:mod:`.breaker`) send what it builds and hand back what comes back.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from seawall import _validate
from seawall.breaker import CircuitBreaker
from seawall.core.window import TimeWindow
from seawall.integrations.redis._common import (
    _FROM_FLEET_CLOSE,
    _FROM_FLEET_OPEN,
    _MAX_BUDGET_TTL_MS,
    _MIN_BUDGET_TTL_MS,
    _MIN_STATE_TTL_MS,
    _NOT_PUBLISHED,
    CLOSED,
    DEFAULT_FLEET_WINDOW,
    HALF_OPEN,
    OPEN,
    FleetView,
    _Health,
    _log,
    _new_replica_id,
    _position,
    _text,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from seawall.core.breaker_state import BreakerState
    from seawall.events import (
        StateChanged,
    )
    from seawall.integrations.redis.budget import RedisRetryBudget


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
