"""The scenarios: timelines of faults on the simulators and the database.

A :class:`Scenario` is a load mix, a duration and a list of timed
:class:`Step` s, each setting or clearing a fault (a :class:`seawall.chaos.Fault`
as JSON) on one simulator or on the service's database calls. Every scenario
has the same shape -- a healthy warm-up, the fault, then recovery -- whose
lengths depend on ``quick``.

Each scenario also names its *headline* figures: what the pattern it exercises
claims to improve (``claimed=True``), and what it is known to trade away
(``claimed=False``, shown beside the claims so the picture stays honest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .load import CLIENT_TIMEOUT

#: The load of most scenarios, in requests per second per route (about 25 rps:
#: both services, their simulators and the generator share 2 cores).
STANDARD_MIX: Mapping[str, float] = {
    "POST /orders": 10.0,
    "GET /products": 10.0,
    "GET /recommendations": 5.0,
}
#: Database fault targets on the service (everything else is a simulator).
DB_TARGETS = ("db_read", "db_write")
#: The service's own work (examples/orders/capacity.py's WorkStage), as a target
#: of capacity steps and a focus whose load the report shows.
SERVICE_TARGET = "orders"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """At ``at`` seconds, set ``fault`` on ``target`` (``None`` clears it).

    A step with ``capacity`` changes the simulator's capacity instead (see
    examples/orders/capacity.py: ``{"scale": 2.0}`` doubles its service time)
    and leaves its fault alone.
    """

    at: float
    target: str
    fault: Mapping[str, Any] | None = None
    capacity: Mapping[str, Any] | None = None
    label: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Headline:
    """A figure a scenario is about, compared between the two runs.

    Attributes:
        label: What a person reads ("POST /orders p99 during the outage").
        metric: ``goodput``, ``success``, ``p50``, ``p99`` (of ``route``, or
            of every route when ``route`` is ``None``), ``in_flight_peak``,
            ``arrivals:<simulator>`` (mean per second), ``arrivals_peak:<simulator>``,
            ``amplification:<simulator>`` (arrivals per request sent),
            ``wasted:<simulator>`` (requests it finished for callers who had
            gone), ``queue_peak:<simulator>`` (most requests waiting for a worker),
            ``busy:<simulator>`` (mean busy workers), ``ttr`` (seconds to
            recover; of ``route`` alone when it is set) or ``charged_twice``.
        window: ``fault`` (while the fault is on), ``after`` (from its end
            to the end of the run), ``incident`` (from the fault's start to
            the end of the run) or ``run`` (all of it).
        better: Which direction is better.
        claimed: ``True`` when the pattern claims this improvement (the tests
            check it); ``False`` for a known trade-off, shown but not claimed.
        unit: For display.
        forced: When a rule of the seawall wiring makes it lose this figure on
            purpose, the rule, in a few words; the report then shows ``cost``
            beside it.
        cost: What the naive wiring's figure costs, measured in the same
            window (the user's wait, the load on the downstream).
    """

    label: str
    metric: str
    route: str | None = None
    window: Literal["fault", "after", "incident", "run"] = "fault"
    better: Literal["higher", "lower"] = "higher"
    claimed: bool = True
    unit: str = ""
    forced: str | None = None
    cost: tuple[Cost, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost:
    """One figure shown beside a forced loss: what the naive figure costs."""

    label: str
    metric: str
    route: str | None = None
    unit: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One fault timeline, run against both services at once."""

    name: str
    title: str
    #: What happens and what to look at, for the report.
    story: str
    mix: Mapping[str, float]
    duration: float
    #: (start, end) of the fault, in seconds: the window its figures are taken over.
    fault: tuple[float, float]
    steps: tuple[Step, ...]
    #: The dependencies whose breaker and bulkhead the report shows (and, for
    #: simulators, their queue and busy workers).
    focus: tuple[str, ...]
    headlines: tuple[Headline, ...]
    #: Per simulator, capacity changes made before the load starts (the
    #: simulators are back to their default sizing at each scenario's start).
    capacity: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: How long the load generator's users wait for an answer before they give
    #: up (the client's timeout): the top of the timeout hierarchy by default.
    client_timeout: float = CLIENT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Phases:
    """Lengths of a scenario's phases, in seconds."""

    warm: float
    fault: float
    recover: float

    @property
    def end(self) -> float:
        """When the fault ends."""
        return self.warm + self.fault

    @property
    def duration(self) -> float:
        """The whole run."""
        return self.warm + self.fault + self.recover


FULL = Phases(warm=5, fault=12, recover=13)
QUICK = Phases(warm=2, fault=4, recover=5)
#: The metastable scenario: the trigger, then long enough to see it outlive it
#: (the claim is about the 30 s after the trigger, in both runs).
METASTABLE_FULL = Phases(warm=10, fault=10, recover=40)
METASTABLE_QUICK = Phases(warm=3, fault=10, recover=30)

#: Payment in the vulnerable state: sized so that 10 orders/s keep it 75 % busy.
#: 12 workers of 0.8-1.0 s complete 13.3 charges/s; with a queue, each waiting
#: request makes the next one 2 % slower, up to 3 times (a server contending
#: for its locks and its database under a backlog).
VULNERABLE_PAYMENT: Mapping[str, Any] = {
    "workers": 12,
    "service_time": 0.8,
    "jitter": 0.2,
    "contention": 0.02,
    "max_slowdown": 3.0,
}
METASTABLE_RATE = 10.0
#: The trigger: payment's own work takes three times as long, for the fault phase.
TRIGGER_SCALE = 3.0


#: The overload scenario: the service's own capacity, 4 workers of 40-60 ms
#: (80 requests/s), half used by 40 requests/s; then 1 worker (20/s) for the
#: fault: the load is twice what it can serve. Its users wait 2 s, then leave.
OWN_CAPACITY: Mapping[str, Any] = {"workers": 4, "service_time": 0.04, "jitter": 0.02}
OVERLOAD_MIX: Mapping[str, float] = {
    "GET /products": 24.0,
    "GET /recommendations": 12.0,
    "POST /orders": 4.0,
}
OVERLOAD_PATIENCE = 2.0
#: What the rule "a critical dependency fails clearly rather than keep a user
#: waiting" costs the naive wiring when it wins a goodput figure anyway.
FAIL_FAST = "critical: a clear 503 rather than a long wait"


def _wait_costs(route: str, focus: str) -> tuple[Cost, ...]:
    return (
        Cost(label=f"{route} p50", metric="p50", route=route, unit="s"),
        Cost(label=f"{route} p99", metric="p99", route=route, unit="s"),
        Cost(label=f"requests waiting at {focus}, peak", metric=f"queue_peak:{focus}"),
        Cost(label=f"requests reaching {focus} per order", metric=f"amplification:{focus}"),
    )


def _fault_steps(p: Phases, target: str, fault: Mapping[str, Any], label: str) -> tuple[Step, ...]:
    return (
        Step(at=p.warm, target=target, fault=fault, label=label),
        Step(at=p.end, target=target, fault=None, label="recovered"),
    )


def scenarios(*, quick: bool = False) -> list[Scenario]:
    """The eight scenarios, with quick or full phase lengths."""
    p = QUICK if quick else FULL
    window = (p.warm, p.end)
    slow = {"latency": 3.0, "jitter": 1.0}
    payment_slow = Scenario(
        name="payment-slow",
        title="1. Payment slow, not down",
        story=(
            "Payment answers every charge, but each one holds one of its 12 workers for 3 to 4 s"
            " instead of 0.2: it can complete about 3.3 charges a second of the 10 offered, and"
            " the rest queue. The naive service waits up to 10 s per attempt and retries at once,"
            " holding a connection of its one shared pool per order: its orders wait in"
            " payment's queue, and most are answered once payment is fast again, seconds late."
            " seawall's adaptive limit (AIMD) admits as many charges as payment answers within"
            " 5 s, about what its 12 workers can do, and refuses the rest at once with 503 and"
            " Retry-After: payment does all it can, and nobody waits long in its queue. Look at"
            " POST /orders latency and goodput against payment's capacity, the requests in"
            " flight, and payment's queue."
        ),
        mix=STANDARD_MIX,
        duration=p.duration,
        fault=window,
        steps=_fault_steps(p, "payment", slow, "payment slow (3-4 s)"),
        focus=("payment",),
        headlines=(
            Headline(
                label="requests in flight at the service, peak, while payment is slow",
                metric="in_flight_peak",
                better="lower",
            ),
            Headline(
                label="POST /orders p50 while payment is slow",
                metric="p50",
                route="POST /orders",
                better="lower",
                claimed=False,
                unit="s",
            ),
            Headline(
                label="POST /orders goodput while payment is slow",
                metric="goodput",
                route="POST /orders",
                claimed=False,
                unit="/s",
                forced=FAIL_FAST,
                cost=_wait_costs("POST /orders", "payment"),
            ),
            Headline(
                label="time to recover after payment is fast again",
                metric="ttr",
                window="after",
                better="lower",
                claimed=False,
                unit="s",
            ),
        ),
    )
    payment_down = Scenario(
        name="payment-down",
        title="2. Payment down hard, then recovered",
        story=(
            "Payment accepts connections and never answers (a hung host), then comes back."
            " The naive service waits 10 s per attempt and retries at once, 6 attempts, so each"
            " order can hold a pooled connection for up to its 25 s deadline; when the pool of"
            " 100 is used up, every downstream call waits for it, recommendations and"
            " inventory included. seawall times out at 8 s; its adaptive limit backs off on"
            " each timeout and refuses the rest at once, and its breaker opens on the failures"
            " and probes a second later, one call at a time, so that the recovery is seen"
            " within about a second. Look at POST /orders latency, the requests in flight, and"
            " GET /recommendations."
        ),
        mix=STANDARD_MIX,
        duration=p.duration,
        fault=window,
        steps=_fault_steps(p, "payment", {"hang_rate": 1.0}, "payment hangs"),
        focus=("payment",),
        headlines=(
            Headline(
                label="POST /orders p99 while payment hangs",
                metric="p99",
                route="POST /orders",
                better="lower",
                unit="s",
            ),
            Headline(
                label="requests in flight at the service, peak, while payment hangs",
                metric="in_flight_peak",
                better="lower",
            ),
            Headline(
                label="GET /recommendations p99 while payment hangs",
                metric="p99",
                route="GET /recommendations",
                better="lower",
                claimed=False,
                unit="s",
            ),
            Headline(
                label="POST /orders goodput while payment hangs",
                metric="goodput",
                route="POST /orders",
                claimed=False,
                unit="/s",
                forced=FAIL_FAST,
                cost=_wait_costs("POST /orders", "payment"),
            ),
            Headline(
                label="time to recover after payment is back",
                metric="ttr",
                window="after",
                better="lower",
                claimed=False,
                unit="s",
            ),
        ),
    )
    recs_down = Scenario(
        name="recommendations-down",
        title="3. Recommendations down (degradable)",
        story=(
            "The recommendation service answers every call with 503, after trying (each"
            " failure holds one of its 4 workers). It is an optional extra: the naive service"
            " retries 5 times at once, keeping the broken service busy with its own retries,"
            " and then fails the page with 500; seawall answers with the popular items, marked"
            " degraded, and its breaker stops calling the broken service. Look at GET"
            " /recommendations success rate and at the requests reaching recommendations."
        ),
        mix=STANDARD_MIX,
        duration=p.duration,
        fault=window,
        steps=_fault_steps(
            p, "recommendations", {"error_rate": 1.0, "status": 503}, "recommendations 503"
        ),
        focus=("recommendations",),
        headlines=(
            Headline(
                label="GET /recommendations goodput while it is down",
                metric="goodput",
                route="GET /recommendations",
                unit="/s",
            ),
            Headline(
                label="requests reaching recommendations per page asked, while it is down",
                metric="amplification:recommendations",
                better="lower",
            ),
        ),
    )
    db_read = Scenario(
        name="db-reads-failing",
        title="4. Database reads failing, stale cache served",
        story=(
            "Every database read fails. The naive service answers GET /products with 500;"
            " seawall serves the last good product from its cache (each product was read"
            " during the warm-up), marked degraded: 'prices may be slightly out of date'."
            " Checkout needs today's prices, so POST /orders fails in both: a stale price is"
            " not good enough to charge. Look at GET /products success rate."
        ),
        mix=STANDARD_MIX,
        duration=p.duration,
        fault=window,
        steps=_fault_steps(p, "db_read", {"error_rate": 1.0, "status": 503}, "db reads fail"),
        focus=("db_read", "db_prices"),
        headlines=(
            Headline(
                label="GET /products goodput while reads fail",
                metric="goodput",
                route="GET /products",
                unit="/s",
            ),
            Headline(
                label="POST /orders goodput while reads fail (critical: no stale prices)",
                metric="goodput",
                route="POST /orders",
                claimed=False,
                unit="/s",
            ),
        ),
    )
    storm_429 = Scenario(
        name="429-storm",
        title="5. A 429 storm with Retry-After",
        story=(
            "Payment rate-limits every charge: 429 Too Many Requests, Retry-After: 2. The"
            " naive service ignores Retry-After and retries at once, 6 attempts per order;"
            " seawall waits as asked (up to its backoff maximum, 5 s), spends at most 20 %"
            " of its calls on retries; its breaker opens on the failures and probes a second"
            " later, and its throttle sheds up to half of the calls while payment refuses"
            " them (and steps aside while the breaker is open). Look at the"
            " requests reaching payment: every one of them is counted against the limit."
        ),
        mix=STANDARD_MIX,
        duration=p.duration,
        fault=window,
        steps=_fault_steps(
            p, "payment", {"error_rate": 1.0, "status": 429, "retry_after": 2.0}, "payment 429"
        ),
        focus=("payment",),
        headlines=(
            Headline(
                label="requests reaching payment per order, during the storm",
                metric="amplification:payment",
                better="lower",
            ),
            Headline(
                label="time to recover after the storm",
                metric="ttr",
                window="after",
                better="lower",
                claimed=False,
                unit="s",
            ),
        ),
    )
    down, recovering = p.fault * 2 / 3, p.fault / 3
    retry_storm = Scenario(
        name="retry-storm",
        title="6. Retry storm: many clients while payment recovers",
        story=(
            "30 orders per second. Payment fails every call with 503, then recovers in two"
            " steps: half of the calls fail, then none. The naive service retries each"
            " failure at once, 6 attempts per order, multiplying the load on the recovering"
            " service: each failed attempt holds one of payment's 12 workers, so its retries"
            " keep payment saturated and queueing while it tries to recover. seawall retries"
            " once with jittered backoff, within a retry budget (20 % of calls); its breaker"
            " stops the calls while payment is down (at 90 % failures), and while half of them"
            " fail it stays closed and serves the half that succeed. Look at the requests reaching"
            " payment per second, beside the 30 orders per second offered, and at payment's"
            " busy workers and queue."
        ),
        mix={"POST /orders": 30.0},
        duration=p.duration,
        fault=window,
        steps=(
            Step(at=p.warm, target="payment", fault={"error_rate": 1.0}, label="payment 503"),
            Step(
                at=p.warm + down,
                target="payment",
                fault={"error_rate": 0.5},
                label="recovering: 50 % 503",
            ),
            Step(at=p.warm + down + recovering, target="payment", label="recovered"),
        ),
        focus=("payment", "compensations"),
        headlines=(
            Headline(
                label="requests reaching payment per second, while it is down and recovering",
                metric="arrivals:payment",
                better="lower",
                unit="/s",
            ),
            Headline(
                label="requests reaching payment per order, while it is down and recovering",
                metric="amplification:payment",
                better="lower",
            ),
            Headline(
                label="requests reaching payment in the busiest second, after the fault",
                metric="arrivals_peak:payment",
                window="after",
                better="lower",
                claimed=False,
                unit="/s",
            ),
            Headline(
                label="POST /orders goodput while payment is down and recovering",
                metric="goodput",
                route="POST /orders",
                claimed=False,
                unit="/s",
                forced=FAIL_FAST,
                cost=_wait_costs("POST /orders", "payment"),
            ),
        ),
    )
    return [
        payment_slow,
        payment_down,
        recs_down,
        db_read,
        storm_429,
        retry_storm,
        metastable(quick=quick),
        overload(quick=quick),
    ]


#: The overload scenario's quick phases: long enough for the naive backlog to
#: pass its users' patience (2 s) and show the collapse.
OVERLOAD_QUICK = Phases(warm=3, fault=8, recover=6)


def overload(*, quick: bool = False) -> Scenario:
    """The service itself offered twice what it can serve."""
    p = OVERLOAD_QUICK if quick else FULL
    return Scenario(
        name="overload",
        title="8. The service itself overloaded: twice what it can serve",
        story=(
            "The order service does some work of its own on every request (4 workers of"
            " 40-60 ms: 80 requests a second), and 40 a second arrive. Then three of its four"
            " workers are gone (a noisy neighbour, a lost replica): it can serve 20 a second,"
            " and twice that keeps coming. Its users wait 2 s for an answer, then leave. The"
            " naive service queues everything: after a second or two every answer comes"
            " after its user has gone, the work is done for nobody, and the backlog outlives"
            " the overload. seawall's load shedding caps the requests in flight with an"
            " adaptive limit learnt from the service's own latency and answers the excess at"
            " once with 503 and Retry-After, recommendations first (degradable), products and"
            " orders last; what it admits is served about as fast as before. Look at the"
            " goodput, at the latency of the answers served, and at the service's own queue."
        ),
        mix=OVERLOAD_MIX,
        duration=p.duration,
        fault=(p.warm, p.end),
        steps=(
            Step(
                at=p.warm,
                target=SERVICE_TARGET,
                capacity={"workers": 1},
                label="1 worker of 4 left",
            ),
            Step(at=p.end, target=SERVICE_TARGET, capacity={"workers": 4}, label="back to 4"),
        ),
        focus=(SERVICE_TARGET,),
        capacity={SERVICE_TARGET: OWN_CAPACITY},
        client_timeout=OVERLOAD_PATIENCE,
        headlines=(
            Headline(
                label="goodput, every route, while overloaded (capacity 20/s)",
                metric="goodput",
                unit="/s",
            ),
            Headline(
                label="p99 of the answers served (2xx), while overloaded",
                metric="p99_ok",
                better="lower",
                unit="s",
            ),
            Headline(
                label="requests the service finished for users who had gone, from the overload on",
                metric=f"wasted:{SERVICE_TARGET}",
                window="incident",
                better="lower",
            ),
            Headline(
                label="requests waiting for the service's own workers, peak, while overloaded",
                metric=f"queue_peak:{SERVICE_TARGET}",
                better="lower",
            ),
            Headline(
                label="time to recover after the overload",
                metric="ttr",
                window="after",
                better="lower",
                unit="s",
            ),
            Headline(
                label="GET /products goodput while overloaded",
                metric="goodput",
                route="GET /products",
                claimed=False,
                unit="/s",
            ),
        ),
    )


def metastable(*, quick: bool = False) -> Scenario:
    """Payment near its capacity, a short slowdown, and what each wiring makes of it."""
    p = METASTABLE_QUICK if quick else METASTABLE_FULL
    return Scenario(
        name="metastable",
        title="7. Metastable failure: a short trigger, an outage that outlives it",
        story=(
            "Payment runs at 75 % of its capacity: 12 workers, 0.8-1.0 s per charge, 10 orders"
            " a second. For 10 s its work takes three times as long (the trigger); then it is"
            " as fast as before, under the same load. The naive service waits 10 s per attempt"
            " and retries at once. Payment does not notice a caller leave, so once its queue is"
            " longer than 10 s it works through requests nobody waits for, each slower for the"
            " backlog, and never catches up: the trigger is gone, the outage stays (Bronson et"
            " al., HotOS 2021). seawall's adaptive limit admits only the charges payment"
            " answers within 5 s, which keeps its queue short, and refuses the rest at once;"
            " as payment speeds up again the limit admits more, and the orders are back. No"
            " caller's wait reaches its timeout during the trigger, so neither wiring"
            " wastes work during the trigger itself; the naive waste begins a few seconds after"
            " it, and does not end."
            " Each charge done for nobody is still a charge: retried without an idempotency"
            " key, it is made twice. Look at payment's queue and the orders' goodput after the"
            " trigger."
        ),
        mix={"POST /orders": METASTABLE_RATE},
        duration=p.duration,
        fault=(p.warm, p.end),
        steps=(
            Step(
                at=p.warm,
                target="payment",
                capacity={"scale": TRIGGER_SCALE},
                label=f"payment {TRIGGER_SCALE:g}x slower",
            ),
            Step(at=p.end, target="payment", capacity={"scale": 1.0}, label="as fast again"),
        ),
        focus=("payment",),
        capacity={"payment": VULNERABLE_PAYMENT},
        headlines=(
            Headline(
                label="POST /orders goodput in the 30 s and more after the trigger",
                metric="goodput",
                route="POST /orders",
                window="after",
                unit="/s",
            ),
            Headline(
                label="time until POST /orders succeeds again (>= 95 % for 3 s)",
                metric="ttr",
                route="POST /orders",
                window="after",
                better="lower",
                unit="s",
            ),
            Headline(
                label="requests payment finished for callers who had gone, from the trigger on",
                metric="wasted:payment",
                window="incident",
                better="lower",
            ),
            Headline(
                label="requests waiting at payment, peak, after the trigger",
                metric="queue_peak:payment",
                window="after",
                better="lower",
            ),
            Headline(
                label="orders charged twice (committed for a caller who had gone, then retried)",
                metric="charged_twice",
                window="run",
                better="lower",
            ),
            Headline(
                label="POST /orders goodput during the trigger",
                metric="goodput",
                route="POST /orders",
                claimed=False,
                unit="/s",
            ),
        ),
    )


def by_name(names: list[str] | None, *, quick: bool = False) -> list[Scenario]:
    """The scenarios named (all when ``names`` is empty), in their usual order.

    Raises:
        ValueError: A name that is not a scenario; the message lists them.
    """
    every = scenarios(quick=quick)
    if not names:
        return every
    known = {s.name: s for s in every}
    unknown = [n for n in names if n not in known]
    if unknown:
        msg = f"unknown scenario(s) {unknown}; one of {sorted(known)}"
        raise ValueError(msg)
    return [s for s in every if s.name in names]
