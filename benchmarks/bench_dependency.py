"""Dependency: the whole pipeline beside the same stack assembled from peers.

A :class:`seawall.Dependency` with a timeout, a retry policy, a circuit breaker
and a bulkhead runs every call through all four. Here the called function never
fails (``async f() -> 1``), so the overhead column is what the pipeline costs a
healthy call. Beside it:

* the floor: ``asyncio.timeout(5)`` and an ``asyncio.Semaphore`` around the
  call, the least a timeout and a concurrency cap can cost in asyncio;
* the same stack assembled from peers: ``asyncio.timeout`` + ``asyncio.Semaphore``
  + tenacity (``@retry``, an ``AsyncRetrying``) + aiobreaker, nested in
  seawall's order (retry outside the breaker, the breaker outside the
  bulkhead, the bulkhead outside the timeout);
* pyresilience's own full pipeline (``@resilient`` with timeout, retry,
  circuit breaker and bulkhead).

Every stack is set up alike: a 5 s timeout per attempt, 3 attempts with
exponential backoff from 0.1 s up to 10 s (full jitter where the library has
it), retrying connection errors and timeouts, each breaker at its defaults, and
100 permits (10,000 in table 2, so that none is refused).

Tables:

1. success path, ns per call (harness), with seawall's per-policy breakdown
2. 10,000 concurrent tasks through one stack: wall time of the gather, with
   the cyclic garbage collector on (as deployed) and off (CPU cost alone), and
   two reference rows: a do-nothing coroutine wrapper, and the floor
3. summary against the targets: seawall >= 5x cheaper than the assembled stack
   and within 1.5x of the floor (overheads over the bare await); 10,000 tasks
   within 1.2x of the bare gather's wall time
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import sys
import time
from dataclasses import dataclass

import aiobreaker
import tenacity
from pyresilience import (
    BulkheadConfig,
    CircuitBreakerConfig,
    RetryConfig,
    TimeoutConfig,
    resilient,
)

from benchmarks._harness import QUICK, Case, Row, Table, compare, print_table
from seawall import Bulkhead, CircuitBreaker, Dependency, State
from seawall.core.backoff import Backoff
from seawall.retry import Retry

TIMEOUT = 5.0
ATTEMPTS = 3
INITIAL = 0.1
MAXIMUM = 10.0
PERMITS = 100
RETRY_ON = (ConnectionError, TimeoutError)
NUMBER = 50_000
TASKS = 10_000

# The targets of the issue.
VS_ASSEMBLED = 5.0  # the assembled stack costs at least 5x seawall's overhead
VS_FLOOR = 1.5  # seawall's overhead at most 1.5x the floor's
VS_BARE_GATHER = 1.2  # 10,000 tasks: at most 1.2x the bare gather's wall time


async def af() -> int:
    return 1


async def tick() -> int:
    """The task body of table 2: give the loop a turn, then answer."""
    await asyncio.sleep(0)
    return 1


# -- the stacks -----------------------------------------------------------------


def _sw_retry() -> Retry:
    return Retry(
        attempts=ATTEMPTS,
        backoff=Backoff.exponential(initial=INITIAL, maximum=MAXIMUM, jitter="full"),
    )


def _sw_full(name: str, permits: int) -> Dependency:
    return Dependency(
        name,
        timeout=TIMEOUT,
        retry=_sw_retry(),
        breaker=CircuitBreaker(name),
        bulkhead=Bulkhead(name, max_concurrent=permits),
    )


def _tenacity():
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=INITIAL, max=MAXIMUM),
        retry=tenacity.retry_if_exception_type(RETRY_ON),
        reraise=True,
    )


def _assembled(fn, name: str, permits: int):
    """tenacity -> aiobreaker -> asyncio.Semaphore -> asyncio.timeout -> ``fn``."""
    sem = asyncio.Semaphore(permits)

    @aiobreaker.CircuitBreaker(name=name)
    async def guarded() -> int:
        async with sem, asyncio.timeout(TIMEOUT):
            return await fn()

    return _tenacity()(guarded)


def _pyresilience(fn, permits: int):
    return resilient(
        timeout=TimeoutConfig(seconds=TIMEOUT),
        retry=RetryConfig(
            max_attempts=ATTEMPTS,
            delay=INITIAL,
            backoff_factor=2.0,
            max_delay=MAXIMUM,
            retry_on=RETRY_ON,
        ),
        circuit_breaker=CircuitBreakerConfig(),
        bulkhead=BulkheadConfig(max_concurrent=permits),
    )(fn)


def _loop_keeps_running(fn):
    """Let the event loop run once every 64 calls, as it does in a server.

    The harness awaits each row in a tight loop that never yields by itself.
    Then every cancelled timer of a timeout scope stays in the loop's heap
    until the round ends, and the garbage collector's passes over that growing
    heap, not the scopes, dominate and blur the numbers (see bench_retry's
    timeout table, where this was first found). Every row here, bare included,
    gets the same wrapper, so all yield to the loop alike. (pyresilience's
    ``asyncio.wait_for`` runs the call in a task of its own and so also yields
    on every call: that is part of its cost.)
    """
    n = 0

    async def run():
        nonlocal n
        n += 1
        if not n & 63:
            await asyncio.sleep(0)
        return await fn()

    return run


# -- 1. success path -------------------------------------------------------------


FULL = "seawall Dependency: await dep.call(f)"
DECORATED = "seawall Dependency: @dep"
FLOOR = "floor: asyncio.timeout + asyncio.Semaphore"
ASSEMBLED = "assembled (tenacity+aiobreaker+Sem+timeout)"
PYRESILIENCE = "pyresilience @resilient (4 policies)"


def success_path() -> Table:
    full = _sw_full("d", PERMITS)
    decorated = _sw_full("d-dec", PERMITS)(af)
    bare_dep = Dependency("d-none")
    timeout_only = Dependency("d-timeout", timeout=TIMEOUT)
    breaker_only = Dependency("d-breaker", breaker=CircuitBreaker("d-breaker"))
    retry_only = Dependency("d-retry", retry=_sw_retry())
    bulkhead_only = Dependency("d-bulkhead", bulkhead=Bulkhead("d-bh", max_concurrent=PERMITS))
    sem = asyncio.Semaphore(PERMITS)

    async def floor() -> int:
        async with asyncio.timeout(TIMEOUT), sem:
            return await af()

    assembled = _assembled(af, "ab-stack", PERMITS)
    pyres = _pyresilience(af, PERMITS)

    cases = [
        ("bare", af),
        (FLOOR, floor),
        (FULL, lambda: full.call(af)),
        (DECORATED, decorated),
        ("seawall Dependency, no policies", lambda: bare_dep.call(af)),
        ("seawall Dependency, timeout only", lambda: timeout_only.call(af)),
        ("seawall Dependency, breaker only", lambda: breaker_only.call(af)),
        ("seawall Dependency, retry only", lambda: retry_only.call(af)),
        ("seawall Dependency, bulkhead only", lambda: bulkhead_only.call(af)),
        (ASSEMBLED, assembled),
        (PYRESILIENCE, pyres),
    ]

    async def check() -> None:
        for _, fn in cases:
            assert await fn() == 1

    asyncio.run(check())
    with contextlib.redirect_stdout(io.StringIO()):
        table = compare(
            "Dependency success path (async)",
            [Case(name, _loop_keeps_running(fn), is_async=True) for name, fn in cases],
            baseline="bare",
            seawall=FULL,
            number=NUMBER,
        )
    table.note = (
        f"timeout {TIMEOUT:g} s, {ATTEMPTS} attempts (exponential {INITIAL:g}..{MAXIMUM:g} s, "
        f"on ConnectionError/TimeoutError), breakers at defaults, {PERMITS} permits.\n"
        "Every row (bare too) yields to the loop once every 64 calls, as in a server.\n"
        "Assembled stack nests tenacity -> aiobreaker -> Semaphore -> asyncio.timeout -> f."
    )
    print_table(table)
    for dep in (full, bare_dep, breaker_only):
        assert dep.breaker is None or dep.breaker.state is State.CLOSED
    return table


# -- 2. 10,000 concurrent tasks ----------------------------------------------------


@dataclass
class TaskRow(Row):
    """A row of table 2: ``ns`` holds wall milliseconds with the collector on."""

    ms_gc_off: float = 0.0
    x_bare_gc_off: float = 0.0


def _gather_ms(make, *, collector: bool) -> float:
    """Wall ms of gathering TASKS tasks, each awaiting ``make()``, in a fresh event loop."""

    async def run() -> float:
        t0 = time.perf_counter()
        results = await asyncio.gather(*[make() for _ in range(TASKS)])
        elapsed = time.perf_counter() - t0
        assert len(results) == TASKS
        assert results[-1] == 1
        return elapsed

    gc.collect()  # every run starts with the collector's counters at zero
    if not collector:
        gc.disable()
    try:
        return asyncio.run(run()) * 1e3
    finally:
        gc.enable()


def _print_tasks(table: Table) -> None:
    print(f"\n## {table.title}")
    if table.note:
        print(table.note)
    print(f"{'case':44s} {'wall ms':>10s} {'x bare':>8s} {'gc off ms':>10s} {'x bare':>8s}")
    for r in table.rows:
        assert isinstance(r, TaskRow)
        print(
            f"{r.name:44s} {r.ns:10.1f} {r.vs_seawall:7.2f}x {r.ms_gc_off:10.1f} "
            f"{r.x_bare_gc_off:7.2f}x"
        )
    sys.stdout.flush()


SW_TASKS = "seawall Dependency (4 policies)"


async def _wrapped() -> int:
    return await tick()


def concurrent_tasks() -> Table:
    dep = _sw_full("d-tasks", TASKS)
    no_timeout = Dependency(
        "d-tasks-nt",
        retry=_sw_retry(),
        breaker=CircuitBreaker("d-tasks-nt"),
        bulkhead=Bulkhead("d-tasks-nt", max_concurrent=TASKS),
    )
    sem = asyncio.Semaphore(TASKS)

    async def floor() -> int:
        async with asyncio.timeout(TIMEOUT), sem:
            return await tick()

    ab = aiobreaker.CircuitBreaker(name="ab-tasks")
    cases = [
        ("bare", tick),
        ("one coroutine wrapper (reference)", _wrapped),
        (FLOOR, floor),
        (SW_TASKS, lambda: dep.call(tick)),
        ("seawall Dependency, no timeout", lambda: no_timeout.call(tick)),
        ("aiobreaker only (cb.call_async)", lambda: ab.call_async(tick)),
        ("tenacity only (@retry)", _tenacity()(tick)),
        (ASSEMBLED, _assembled(tick, "ab-tasks-stack", TASKS)),
        (PYRESILIENCE, _pyresilience(tick, TASKS)),
    ]
    rounds = 3 if QUICK else 7
    _gather_ms(tick, collector=True)  # warm up the allocator
    on = {name: float("inf") for name, _ in cases}
    off = dict(on)
    for _ in range(rounds):
        for name, make in cases:
            on[name] = min(on[name], _gather_ms(make, collector=True))
            off[name] = min(off[name], _gather_ms(make, collector=False))
    rows = [
        TaskRow(
            name,
            on[name],
            None if name == "bare" else on[name] - on["bare"],
            on[name] / on["bare"],
            off[name],
            off[name] / off["bare"],
        )
        for name, _ in cases
    ]
    table = Table(
        f"{TASKS:,} concurrent tasks (asyncio.gather, each task awaits sleep(0)), wall ms",
        rows,
        (
            f"Best of {rounds} interleaved rounds, each a fresh event loop after gc.collect(). "
            "Every stack has a\n"
            f"{TIMEOUT:g} s timeout (where it has one) and {TASKS:,} permits, so none is refused. "
            "'x bare' is wall time\n"
            "over the bare gather's (ratio, not overhead). 'gc off': the same with the cyclic "
            "collector disabled,\n"
            "which shows the CPU cost alone: with it on, a run that allocates a little more than "
            "the bare gather\n"
            "crosses the threshold of a full (generation 2) collection, which costs about as "
            "much as the bare\n"
            "gather itself here; the reference wrapper row shows that step."
        ),
    )
    _print_tasks(table)
    for d in (dep, no_timeout):
        assert d.breaker is not None
        assert d.breaker.state is State.CLOSED
    return table


# -- 3. summary ----------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def summary(path: Table, tasks: Table) -> Table:
    by = {r.name: r for r in path.rows}
    ours = by[FULL].overhead_ns or 0.0
    floor = by[FLOOR].overhead_ns or 0.0
    assembled = by[ASSEMBLED].overhead_ns or 0.0
    pyres = by[PYRESILIENCE].overhead_ns or 0.0
    vs_assembled = assembled / ours if ours > 0 else float("inf")
    vs_floor = ours / floor if floor > 0 else float("inf")
    tk = {r.name: r for r in tasks.rows}
    sw, bare = tk[SW_TASKS], tk["bare"]
    assert isinstance(sw, TaskRow)
    assert isinstance(bare, TaskRow)
    vs_bare = sw.vs_seawall or 0.0  # x bare, in that table
    lines = [
        (
            f"assembled stack / seawall overhead = {vs_assembled:.1f}x "
            f"({assembled / 1e3:.1f} us vs {ours / 1e3:.2f} us; target >= {VS_ASSEMBLED:g}x): "
            f"{_verdict(vs_assembled >= VS_ASSEMBLED)}"
        ),
        (
            f"seawall / floor overhead = {vs_floor:.2f}x "
            f"({ours / 1e3:.2f} us vs {floor / 1e3:.2f} us; target <= {VS_FLOOR:g}x): "
            f"{_verdict(vs_floor <= VS_FLOOR)}"
        ),
        (
            f"{TASKS:,} tasks: seawall / bare gather wall time = {vs_bare:.2f}x "
            f"({sw.ns:.1f} ms vs {bare.ns:.1f} ms; target <= {VS_BARE_GATHER:g}x): "
            f"{_verdict(vs_bare <= VS_BARE_GATHER)}"
        ),
        (
            f"  (collector off: {sw.x_bare_gc_off:.2f}x, {sw.ms_gc_off:.1f} ms vs "
            f"{bare.ms_gc_off:.1f} ms: {_verdict(sw.x_bare_gc_off <= VS_BARE_GATHER)})"
        ),
        (
            f"(context: pyresilience's pipeline costs {pyres / ours:.1f}x seawall's overhead, "
            f"{pyres / 1e3:.1f} us)"
        ),
    ]
    rows = [
        Row(FULL, by[FULL].ns, ours, 1.0),
        Row(FLOOR, by[FLOOR].ns, floor, floor / ours if ours > 0 else None),
        Row(ASSEMBLED, by[ASSEMBLED].ns, assembled, vs_assembled),
        Row(PYRESILIENCE, by[PYRESILIENCE].ns, pyres, pyres / ours if ours > 0 else None),
    ]
    table = Table("summary: Dependency against the targets", rows, "\n".join(lines))
    print_table(table)
    return table


def main() -> list[Table]:
    path = success_path()
    tasks = concurrent_tasks()
    return [path, tasks, summary(path, tasks)]


if __name__ == "__main__":
    main()
