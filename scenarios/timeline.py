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
from dataclasses import dataclass
from typing import Any, Literal

#: The load of most scenarios, in requests per second per route (about 25 rps:
#: both services, their simulators and the generator share 2 cores).
STANDARD_MIX: Mapping[str, float] = {
    "POST /orders": 10.0,
    "GET /products": 10.0,
    "GET /recommendations": 5.0,
}
#: Database fault targets on the service (everything else is a simulator).
DB_TARGETS = ("db_read", "db_write")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """At ``at`` seconds, set ``fault`` on ``target`` (``None`` clears it)."""

    at: float
    target: str
    fault: Mapping[str, Any] | None = None
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
            ``ttr`` (seconds to recover) or ``charged_twice``.
        window: ``fault`` (while the fault is on), ``after`` (from its end
            to the end of the run) or ``run`` (all of it).
        better: Which direction is better.
        claimed: ``True`` when the pattern claims this improvement (the tests
            check it); ``False`` for a known trade-off, shown but not claimed.
        unit: For display.
    """

    label: str
    metric: str
    route: str | None = None
    window: Literal["fault", "after", "run"] = "fault"
    better: Literal["higher", "lower"] = "higher"
    claimed: bool = True
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
    #: The dependencies whose breaker and bulkhead the report shows.
    focus: tuple[str, ...]
    headlines: tuple[Headline, ...]


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


def _fault_steps(p: Phases, target: str, fault: Mapping[str, Any], label: str) -> tuple[Step, ...]:
    return (
        Step(at=p.warm, target=target, fault=fault, label=label),
        Step(at=p.end, target=target, fault=None, label="recovered"),
    )


def scenarios(*, quick: bool = False) -> list[Scenario]:
    """The six scenarios, with quick or full phase lengths."""
    p = QUICK if quick else FULL
    window = (p.warm, p.end)
    slow = {"latency": 3.0, "jitter": 1.0}
    payment_slow = Scenario(
        name="payment-slow",
        title="1. Payment slow, not down",
        story=(
            "Payment answers every charge, but in 3 to 4 s instead of 10 ms: below every"
            " timeout (naive 10 s, seawall 8 s). The naive service waits for each one and holds"
            " a connection of its one shared pool per order. seawall's breaker counts calls"
            " slower than 2 s; when half of the last 10 s are slow it opens and orders fail at"
            " once with 503 and Retry-After, and the payment bulkhead never holds more than 20"
            " calls. Look at POST /orders latency and the requests in flight: the naive service"
            " keeps every order waiting; seawall refuses orders fast and holds nothing."
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
            " inventory included. seawall times out at 8 s, fills the 20-permit bulkhead, then"
            " refuses at once; its breaker opens and probes 5 s later. Look at POST /orders"
            " latency, the requests in flight, and GET /recommendations."
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
            "The recommendation service answers every call with 503. It is an optional extra:"
            " the naive service retries 5 times at once and then fails the page with 500;"
            " seawall answers with the popular items, marked degraded, and its breaker stops"
            " calling the broken service. Look at GET /recommendations success rate and at the"
            " requests reaching recommendations."
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
            " of its calls on retries, and its breaker opens on the failures. Look at the"
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
            " service; seawall retries once with jittered backoff, within a retry budget"
            " (20 % of calls), and its breaker stops the calls while payment is down. Look at"
            " the requests reaching payment per second, beside the 30 orders per second"
            " offered. (The simulator does not slow down under load, so here the naive"
            " retries cost payment nothing; a real recovering service would be pushed back"
            " down by them.)"
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
            ),
        ),
    )
    return [payment_slow, payment_down, recs_down, db_read, storm_429, retry_storm]


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
