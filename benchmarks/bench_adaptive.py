"""Adaptive limit and throttle: what they cost a healthy call, beside the fixed policies.

An :class:`~seawall.AdaptiveLimit` takes a bulkhead's place, and a
:class:`~seawall.Throttle` sits beside (outside) a circuit breaker, so each is
measured against the policy it stands in for, path by path: ``with`` / ``async
with``, the decorator, and ``call(f)`` / ``call_async(f)``. The goal of the
issue is at most 1.5x the fixed policy's overhead on the same path.

Every row calls the same trivial function (``f() -> 1``, or ``async f() ->
1``) from the same kind of caller frame, so the overhead column is exactly
what each policy adds; the harness interleaves the rows in rounds and keeps
each row's best round.

Such a call takes well under the sample window's ``min_rtt`` (0.1 ms), so an
AdaptiveLimit at its defaults does not count it in its window: the rows marked
``min_rtt=0`` count every call, as the limit does with a real call of a
tenth of a millisecond or more. Those are the rows that say what a limit
costs in service.

No Python peer library ships an adaptive concurrency limit (nor a client-side
throttle), so the peers here are the standard library's own concurrency caps,
``threading.BoundedSemaphore`` and ``asyncio.Semaphore`` (both written in
Python). A semaphore waits for a permit where a bulkhead and a limit refuse;
``acquire(blocking=False)`` is the refusing form.

Tables:

1. concurrency cap, sync      (ThreadBulkhead, AdaptiveLimit, threading semaphores)
2. concurrency cap, async     (Bulkhead, AdaptiveLimit, asyncio.Semaphore)
3. throttle, sync             (CircuitBreaker closed, Throttle shedding nothing)
4. throttle, async
5. Dependency, async: ``await dep.call(f)`` with a Bulkhead or an AdaptiveLimit (+ Throttle)
6. Dependency, sync: ``dep.call_sync(f)`` with a ThreadBulkhead or an AdaptiveLimit (+ Throttle)
7. summary: every ratio against the 1.5x goal
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import threading
from dataclasses import dataclass

from benchmarks._harness import Case, Row, Table, compare
from seawall import (
    AdaptiveLimit,
    Bulkhead,
    CircuitBreaker,
    Dependency,
    State,
    ThreadBulkhead,
    Throttle,
)
from seawall.core.limit import SampleWindowConfig

PERMITS = 100  # of every fixed cap; an AdaptiveLimit starts at 20 (its default)
NUMBER = 200_000
GOAL = 1.5  # the issue's: an adaptive policy's overhead at most 1.5x the fixed one's
COUNTED = SampleWindowConfig(min_rtt=0.0)  # every call counted, as a real call would be


def f() -> int:
    return 1


async def af() -> int:
    return 1


def _limit(name: str, algorithm: str, *, counted: bool = False) -> AdaptiveLimit:
    return AdaptiveLimit(name, algorithm=algorithm, window=COUNTED if counted else None)  # type: ignore[arg-type]


def _limit_label(algorithm: str, *, counted: bool = False) -> str:
    return f"AdaptiveLimit({algorithm}{', min_rtt=0' if counted else ''})"


LIMITS = [("gradient2", False), ("aimd", False), ("gradient2", True), ("aimd", True)]


# -- the tables: each row names the row it is measured against ----------------------


@dataclass
class Spec:
    """One row: ``ref`` is the row its overhead is divided by in the last column."""

    name: str
    fn: object
    ref: str | None = None
    # The fixed row this one is held to the goal against in the summary: by
    # default ``ref``; "" for a row shown for context only.
    judge: str | None = None

    def judged_against(self) -> str | None:
        if self.judge == "":
            return None
        ref = self.judge or self.ref
        return None if ref == self.name else ref


# Per table title: each judged row's fixed reference row.
JUDGED: dict[str, dict[str, str]] = {}


def _table(title: str, specs: list[Spec], *, is_async: bool, ref_label: str, note: str) -> Table:
    """Time the rows (harness), then divide each overhead by its same-path reference's."""
    if is_async:

        async def check() -> None:
            for s in specs:
                assert await s.fn() == 1, s.name  # type: ignore[operator]

        asyncio.run(check())
    else:
        for s in specs:
            assert s.fn() == 1, s.name  # type: ignore[operator]
    cases = [Case(s.name, s.fn, is_async=is_async) for s in specs]  # type: ignore[arg-type]
    with contextlib.redirect_stdout(io.StringIO()):
        table = compare(title, cases, baseline="bare", seawall=None, number=NUMBER)
    rows = {r.name: r for r in table.rows}
    judged = {s.name: s.judged_against() for s in specs}
    JUDGED[title] = {name: ref for name, ref in judged.items() if ref}
    for s in specs:
        r = rows[s.name]
        ref = rows.get(s.ref) if s.ref else None
        r.vs_seawall = None
        if (
            ref is not None
            and ref.overhead_ns
            and ref.overhead_ns > 0
            and r.overhead_ns is not None
        ):
            r.vs_seawall = r.overhead_ns / ref.overhead_ns
    table.note = f"{note}\nlast column: overhead / overhead of {ref_label}"
    _print(table, "x " + ref_label)
    return table


def _print(table: Table, mult: str) -> None:
    print(f"\n## {table.title}")
    if table.note:
        print(table.note)
    width = max(44, *(len(r.name) for r in table.rows))
    print(f"{'case':{width}s} {'ns/call':>10s} {'overhead':>10s}  {mult}")
    for r in table.rows:
        over = "" if r.overhead_ns is None else f"{r.overhead_ns:10.0f}"
        m = "" if r.vs_seawall is None else f"{r.vs_seawall:9.2f}x"
        print(f"{r.name:{width}s} {r.ns:10.0f} {over:>10s}  {m}")
    sys.stdout.flush()


# -- 1. concurrency cap, sync --------------------------------------------------------


def limit_sync() -> tuple[Table, list[AdaptiveLimit]]:
    bh_with = ThreadBulkhead("tb-with", max_concurrent=PERMITS)
    bh_f = ThreadBulkhead("tb-dec", max_concurrent=PERMITS)(f)
    bh_call = ThreadBulkhead("tb-call", max_concurrent=PERMITS)
    sem = threading.BoundedSemaphore(PERMITS)
    sem_nb = threading.BoundedSemaphore(PERMITS)

    def bare():
        return f()

    def semaphore_with():
        with sem:
            return f()

    def semaphore_nonblocking():
        if not sem_nb.acquire(blocking=False):
            raise RuntimeError("full")
        try:
            return f()
        finally:
            sem_nb.release()

    def bulkhead_with():
        with bh_with:
            return f()

    def bulkhead_decorator():
        return bh_f()

    def bulkhead_call():
        return bh_call.call(f)

    ref = {
        "with": "seawall ThreadBulkhead: with",
        "@": "seawall ThreadBulkhead: @bulkhead",
        "call": "seawall ThreadBulkhead: .call(f)",
    }
    specs = [
        Spec("bare", bare),
        Spec("threading.BoundedSemaphore: with sem", semaphore_with, ref["with"], ""),
        Spec(
            "threading.BoundedSemaphore: acquire(blocking=False)",
            semaphore_nonblocking,
            ref["with"],
            "",
        ),
        Spec(ref["with"], bulkhead_with, ref["with"]),
        Spec(ref["@"], bulkhead_decorator, ref["@"]),
        Spec(ref["call"], bulkhead_call, ref["call"]),
    ]
    limits = []
    for algorithm, counted in LIMITS:
        label = _limit_label(algorithm, counted=counted)
        lim_with = _limit(f"with-{algorithm}-{counted}", algorithm, counted=counted)
        lim_dec = _limit(f"dec-{algorithm}-{counted}", algorithm, counted=counted)
        lim_call = _limit(f"call-{algorithm}-{counted}", algorithm, counted=counted)
        limits += [lim_with, lim_dec, lim_call]
        lim_f = lim_dec(f)

        def limit_with(lim=lim_with):
            with lim:
                return f()

        def limit_decorator(fn=lim_f):
            return fn()

        def limit_call(lim=lim_call):
            return lim.call(f)

        specs += [
            Spec(f"seawall {label}: with", limit_with, ref["with"]),
            Spec(f"seawall {label}: @limit", limit_decorator, ref["@"]),
            Spec(f"seawall {label}: .call(f)", limit_call, ref["call"]),
        ]
    table = _table(
        "concurrency cap, sync (ns per call; a permit always free)",
        specs,
        is_async=False,
        ref_label="ThreadBulkhead, same path",
        note=(
            f"ThreadBulkhead({PERMITS}) beside AdaptiveLimit at its defaults (initial 20); "
            "min_rtt=0: every call counted in the sample window.\n"
            "The threading semaphores are the stdlib peers (no Python library has an adaptive limit)."
        ),
    )
    return table, limits


# -- 2. concurrency cap, async -------------------------------------------------------


def limit_async() -> tuple[Table, list[AdaptiveLimit]]:
    bh_with = Bulkhead("b-with", max_concurrent=PERMITS)
    bh_f = Bulkhead("b-dec", max_concurrent=PERMITS)(af)
    bh_call = Bulkhead("b-call", max_concurrent=PERMITS)
    sem = asyncio.Semaphore(PERMITS)

    async def bare():
        return await af()

    async def semaphore_with():
        async with sem:
            return await af()

    async def bulkhead_with():
        async with bh_with:
            return await af()

    async def bulkhead_decorator():
        return await bh_f()

    async def bulkhead_call():
        return await bh_call.call_async(af)

    ref = {
        "async with": "seawall Bulkhead: async with",
        "@": "seawall Bulkhead: @bulkhead (async def)",
        "call_async": "seawall Bulkhead: await .call_async(f)",
    }
    specs = [
        Spec("bare", bare),
        Spec("asyncio.Semaphore: async with sem", semaphore_with, ref["async with"], ""),
        Spec(ref["async with"], bulkhead_with, ref["async with"]),
        Spec(ref["@"], bulkhead_decorator, ref["@"]),
        Spec(ref["call_async"], bulkhead_call, ref["call_async"]),
    ]
    limits = []
    for algorithm, counted in LIMITS:
        label = _limit_label(algorithm, counted=counted)
        lim_with = _limit(f"awith-{algorithm}-{counted}", algorithm, counted=counted)
        lim_dec = _limit(f"adec-{algorithm}-{counted}", algorithm, counted=counted)
        lim_call = _limit(f"acall-{algorithm}-{counted}", algorithm, counted=counted)
        limits += [lim_with, lim_dec, lim_call]
        lim_f = lim_dec(af)

        async def limit_with(lim=lim_with):
            async with lim:
                return await af()

        async def limit_decorator(fn=lim_f):
            return await fn()

        async def limit_call(lim=lim_call):
            return await lim.call_async(af)

        specs += [
            Spec(f"seawall {label}: async with", limit_with, ref["async with"]),
            Spec(f"seawall {label}: @limit (async def)", limit_decorator, ref["@"]),
            Spec(f"seawall {label}: await .call_async(f)", limit_call, ref["call_async"]),
        ]
    table = _table(
        "concurrency cap, async (ns per call; a permit always free)",
        specs,
        is_async=True,
        ref_label="Bulkhead, same path",
        note=(
            f"Bulkhead({PERMITS}) beside AdaptiveLimit at its defaults (initial 20); "
            "min_rtt=0: every call counted in the sample window.\n"
            "asyncio.Semaphore is the stdlib peer (no Python library has an adaptive limit)."
        ),
    )
    return table, limits


# -- 3 and 4. throttle beside a closed breaker -----------------------------------------


def throttle_sync() -> tuple[Table, list[Throttle], list[CircuitBreaker]]:
    br_with = CircuitBreaker("t-br-with")
    br_f = CircuitBreaker("t-br-dec")(f)
    br_call = CircuitBreaker("t-br-call")
    th_with = Throttle("t-with")
    th_f_owner = Throttle("t-dec")
    th_f = th_f_owner(f)
    th_call = Throttle("t-call")

    def bare():
        return f()

    def breaker_with():
        with br_with:
            return f()

    def breaker_decorator():
        return br_f()

    def breaker_call():
        return br_call.call(f)

    def throttle_with():
        with th_with:
            return f()

    def throttle_decorator():
        return th_f()

    def throttle_call():
        return th_call.call(f)

    ref = {
        "with": "seawall CircuitBreaker: with",
        "@": "seawall CircuitBreaker: @breaker",
        "call": "seawall CircuitBreaker: .call(f)",
    }
    specs = [
        Spec("bare", bare),
        Spec(ref["with"], breaker_with, ref["with"]),
        Spec(ref["@"], breaker_decorator, ref["@"]),
        Spec(ref["call"], breaker_call, ref["call"]),
        Spec("seawall Throttle: with", throttle_with, ref["with"]),
        Spec("seawall Throttle: @throttle", throttle_decorator, ref["@"]),
        Spec("seawall Throttle: .call(f)", throttle_call, ref["call"]),
    ]
    table = _table(
        "throttle, sync (ns per call; breaker CLOSED, throttle shedding nothing)",
        specs,
        is_async=False,
        ref_label="CircuitBreaker, same path",
        note="Both at their defaults: breaker CountWindow(100); throttle k=2, 120 s window in 60 buckets.",
    )
    return table, [th_with, th_f_owner, th_call], [br_with, br_call]


def throttle_async() -> tuple[Table, list[Throttle], list[CircuitBreaker]]:
    br_with = CircuitBreaker("ta-br-with")
    br_f = CircuitBreaker("ta-br-dec")(af)
    br_call = CircuitBreaker("ta-br-call")
    th_with = Throttle("ta-with")
    th_f_owner = Throttle("ta-dec")
    th_f = th_f_owner(af)
    th_call = Throttle("ta-call")

    async def bare():
        return await af()

    async def breaker_with():
        async with br_with:
            return await af()

    async def breaker_decorator():
        return await br_f()

    async def breaker_call():
        return await br_call.call_async(af)

    async def throttle_with():
        async with th_with:
            return await af()

    async def throttle_decorator():
        return await th_f()

    async def throttle_call():
        return await th_call.call_async(af)

    ref = {
        "async with": "seawall CircuitBreaker: async with",
        "@": "seawall CircuitBreaker: @breaker (async def)",
        "call_async": "seawall CircuitBreaker: await .call_async(f)",
    }
    specs = [
        Spec("bare", bare),
        Spec(ref["async with"], breaker_with, ref["async with"]),
        Spec(ref["@"], breaker_decorator, ref["@"]),
        Spec(ref["call_async"], breaker_call, ref["call_async"]),
        Spec("seawall Throttle: async with", throttle_with, ref["async with"]),
        Spec("seawall Throttle: @throttle (async def)", throttle_decorator, ref["@"]),
        Spec("seawall Throttle: await .call_async(f)", throttle_call, ref["call_async"]),
    ]
    table = _table(
        "throttle, async (ns per call; breaker CLOSED, throttle shedding nothing)",
        specs,
        is_async=True,
        ref_label="CircuitBreaker, same path",
        note="Both at their defaults: breaker CountWindow(100); throttle k=2, 120 s window in 60 buckets.",
    )
    return table, [th_with, th_f_owner, th_call], [br_with, br_call]


# -- 5 and 6. through a Dependency ----------------------------------------------------

NO_POLICIES = "seawall Dependency, no policies"
FIXED = "seawall Dependency(bulkhead=FIXED)"
FIXED_BREAKER = "seawall Dependency(bulkhead=FIXED, breaker=CircuitBreaker)"


def _dep_specs(fixed_name: str, fixed, make, bare) -> tuple[list[Spec], list[Dependency]]:
    """The rows of tables 5 and 6; ``fixed(name)`` builds the plain bulkhead.

    Each adaptive row is judged against the fixed pipeline it replaces: a limit
    against the bulkhead, a throttle against a breaker in the same place (both
    are admission checks before the cap), both together against both fixed.
    """

    def name(label: str) -> str:
        return label.replace("FIXED", fixed_name)

    fixed_row, fixed_breaker = name(FIXED), name(FIXED_BREAKER)
    rows: list[tuple[str, Dependency, str | None]] = [
        (NO_POLICIES, Dependency("d-none"), ""),
        (fixed_row, Dependency("d-fixed", bulkhead=fixed("d-fixed")), None),
        (
            "seawall Dependency(bulkhead=AdaptiveLimit(gradient2))",
            Dependency("d-g2", bulkhead=_limit("d-g2", "gradient2")),
            None,
        ),
        (
            "seawall Dependency(bulkhead=AdaptiveLimit(aimd))",
            Dependency("d-aimd", bulkhead=_limit("d-aimd", "aimd")),
            None,
        ),
        (
            "seawall Dependency(bulkhead=AdaptiveLimit(gradient2, min_rtt=0))",
            Dependency("d-g2c", bulkhead=_limit("d-g2c", "gradient2", counted=True)),
            None,
        ),
        (
            fixed_breaker,
            Dependency("d-fixed-br", bulkhead=fixed("d-fixed-br"), breaker=CircuitBreaker("d-br")),
            "",
        ),
        (
            name("seawall Dependency(bulkhead=FIXED, throttle=Throttle)"),
            Dependency("d-fixed-th", bulkhead=fixed("d-fixed-th"), throttle=Throttle("d-th")),
            fixed_breaker,
        ),
        (
            "seawall Dependency(bulkhead=AdaptiveLimit(gradient2), throttle=Throttle)",
            Dependency(
                "d-g2-th", bulkhead=_limit("d-g2-th", "gradient2"), throttle=Throttle("d-g2-th")
            ),
            fixed_breaker,
        ),
    ]
    specs = [Spec("bare", bare)]
    specs += [
        Spec(label, make(dep), None if label == NO_POLICIES else fixed_row, judge)
        for label, dep, judge in rows
    ]
    return specs, [dep for _, dep, _ in rows]


def dependency_async() -> tuple[Table, list[Dependency]]:
    async def bare():
        return await af()

    def make(dep):
        async def run():
            return await dep.call(af)

        return run

    specs, deps = _dep_specs(
        "Bulkhead", lambda name: Bulkhead(name, max_concurrent=PERMITS), make, bare
    )
    table = _table(
        "Dependency, async: await dep.call(f) (ns per call)",
        specs,
        is_async=True,
        ref_label="Dependency(bulkhead=Bulkhead)",
        note=(
            f"No timeout and no retry: a cap (Bulkhead({PERMITS}) or AdaptiveLimit), and a "
            "breaker or a Throttle where named.\nThe summary judges each throttle row against "
            "the breaker row (a throttle stands where a breaker would)."
        ),
    )
    return table, deps


def dependency_sync() -> tuple[Table, list[Dependency]]:
    def bare():
        return f()

    def make(dep):
        def run():
            return dep.call_sync(f)

        return run

    specs, deps = _dep_specs(
        "ThreadBulkhead", lambda name: ThreadBulkhead(name, max_concurrent=PERMITS), make, bare
    )
    table = _table(
        "Dependency, sync: dep.call_sync(f) (ns per call)",
        specs,
        is_async=False,
        ref_label="Dependency(bulkhead=ThreadBulkhead)",
        note=(
            f"No timeout and no retry: a cap (ThreadBulkhead({PERMITS}) or AdaptiveLimit), and "
            "a breaker or a Throttle where named.\nThe summary judges each throttle row against "
            "the breaker row (a throttle stands where a breaker would)."
        ),
    )
    return table, deps


# -- 7. summary ------------------------------------------------------------------------


def summary(tables: list[tuple[str, Table]]) -> Table:
    """Every adaptive row's overhead over the fixed row it replaces, against the goal."""
    rows = []
    missed = 0
    lines = []
    for where, table in tables:
        by = {r.name: r for r in table.rows}
        for row_name, ref_name in JUDGED[table.title].items():
            r, ref = by[row_name], by[ref_name]
            over, ref_over = r.overhead_ns or 0.0, ref.overhead_ns or 0.0
            ratio = over / ref_over if ref_over > 0 else float("inf")
            ok = ratio <= GOAL
            missed += not ok
            rows.append(Row(f"{where}: {row_name} vs {ref_name}", over, ref_over, ratio))
            lines.append((where, row_name, ref_name, over, ref_over, ratio, ok))
    width = max(len(line[1]) for line in lines)
    print(
        f"\n## summary: adaptive overhead / overhead of the fixed policy it replaces (goal <= {GOAL:g}x)"
    )
    print(f"{'table':18s} {'row':{width}s} {'ns':>6s} {'fixed ns':>8s} {'ratio':>7s}")
    for where, row_name, _, over, ref_over, ratio, ok in lines:
        mark = "ok" if ok else "MISSED"
        print(f"{where:18s} {row_name:{width}s} {over:6.0f} {ref_over:8.0f} {ratio:6.2f}x {mark}")
    note = (
        "Row fields here: ns = the adaptive row's overhead, overhead_ns = the fixed row's, "
        f"vs_seawall = the ratio. Goal <= {GOAL:g}x: met by {len(rows) - missed} of "
        f"{len(rows)} rows."
    )
    print(note)
    return Table(f"summary: adaptive / fixed overhead, same path (goal <= {GOAL:g}x)", rows, note)


def main() -> list[Table]:
    t1, limits1 = limit_sync()
    t2, limits2 = limit_async()
    t3, throttles3, breakers3 = throttle_sync()
    t4, throttles4, breakers4 = throttle_async()
    t5, deps5 = dependency_async()
    t6, deps6 = dependency_sync()
    # Every call was healthy: no permit is left held, nothing was refused or shed.
    for lim in limits1 + limits2:
        assert lim.in_flight == 0, lim
        assert lim.rejected == 0, lim
    for th in throttles3 + throttles4:
        assert th.rejected == 0, th
        assert th.probability == 0.0, th
    for br in breakers3 + breakers4:
        assert br.state is State.CLOSED, br
    for dep in deps5 + deps6:
        cap = dep.bulkhead
        assert cap is None or cap.in_use == 0, dep
        assert dep.throttle is None or dep.throttle.rejected == 0, dep
    tables = [t1, t2, t3, t4, t5, t6]
    tables.append(
        summary(
            [
                ("cap, sync", t1),
                ("cap, async", t2),
                ("throttle, sync", t3),
                ("throttle, async", t4),
                ("Dependency, async", t5),
                ("Dependency, sync", t6),
            ]
        )
    )
    return tables


if __name__ == "__main__":
    main()
