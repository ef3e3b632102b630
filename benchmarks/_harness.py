"""Measure ns per call of several ways to do the same thing, in one run.

Every case of a comparison is timed in interleaved rounds (case A, B, C, then A,
B, C again ...) and the best round is kept, so drift of the machine during the
run hits all cases alike. Results print as a table: ns per call, overhead over
the bare call, and each row's overhead as a multiple of seawall's.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUICK = os.environ.get("SEAWALL_BENCH_QUICK") == "1"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@dataclass
class Case:
    """One way of making a call: ``fn`` is sync, or async when ``is_async``."""

    name: str
    fn: Callable[[], object] | Callable[[], Awaitable[object]]
    is_async: bool = False


@dataclass
class Row:
    name: str
    ns: float
    overhead_ns: float | None = None
    vs_seawall: float | None = None


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)
    note: str = ""


def _time_sync(fn: Callable[[], object], number: int) -> float:
    return timeit.Timer(fn).timeit(number) / number


def _time_async(fn: Callable[[], Awaitable[object]], number: int) -> float:
    async def loop() -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            await fn()
        return (time.perf_counter() - t0) / number

    return asyncio.run(loop())


def compare(
    title: str,
    cases: list[Case],
    *,
    baseline: str | None = "bare",
    seawall: str | None = None,
    number: int = 200_000,
    rounds: int = 7,
    note: str = "",
) -> Table:
    """Time every case; overheads are against ``baseline``, multiples against ``seawall``.

    ``seawall`` names the seawall case the others are compared with (by default
    the first case whose name starts with "seawall").
    """
    if QUICK:
        number, rounds = max(number // 10, 1000), 3
    best = {c.name: float("inf") for c in cases}
    for _ in range(rounds):
        for c in cases:
            if c.is_async:
                t = _time_async(c.fn, number)  # type: ignore[arg-type]
            else:
                t = _time_sync(c.fn, number)
            best[c.name] = min(best[c.name], t)
    base = best.get(baseline) if baseline else None
    ref_name = seawall or next((c.name for c in cases if c.name.startswith("seawall")), None)
    rows = []
    for c in cases:
        ns = best[c.name] * 1e9
        over = None if base is None else ns - base * 1e9
        rows.append(Row(c.name, ns, over))
    ref = next((r for r in rows if r.name == ref_name), None)
    if ref is not None and ref.overhead_ns is not None and ref.overhead_ns > 0:
        for r in rows:
            if r.overhead_ns is not None and r.name != baseline:
                r.vs_seawall = r.overhead_ns / ref.overhead_ns
    table = Table(title, rows, note)
    print_table(table)
    return table


def print_table(table: Table) -> None:
    print(f"\n## {table.title}")
    if table.note:
        print(table.note)
    print(f"{'case':44s} {'ns/call':>10s} {'overhead':>10s} {'x seawall':>10s}")
    for r in table.rows:
        over = "" if r.overhead_ns is None else f"{r.overhead_ns:10.0f}"
        mult = "" if r.vs_seawall is None else f"{r.vs_seawall:9.2f}x"
        print(f"{r.name:44s} {r.ns:10.0f} {over:>10s} {mult:>10s}")
    sys.stdout.flush()


def save(name: str, tables: list[Table]) -> Path:
    """Write the tables as JSON under artifacts/, for the docs and for comparison."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"bench-{name}.json"
    payload = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": QUICK,
        "tables": [asdict(t) for t in tables],
    }
    path.write_text(json.dumps(payload, indent=2))
    return path
