"""From raw requests and samples to the figures of the report.

Definitions (the report states them too):

* A request belongs to the second it was *sent* in. Its latency is how long the
  client waited, answered or not: a fast 503 is a short wait.
* success rate: 2xx answers / requests sent (unanswered, timed out, dropped
  and unfinished ones are failures).
* goodput: 2xx answers per second (degraded 2xx included, and counted apart).
* p50 / p99: percentiles of latency, linear between closest ranks; p99_ok the
  p99 of the 2xx answers alone (what the users who were served waited).
* time to recover: seconds from the end of the fault to the first second from
  which the success rate of all routes stays >= 95 % for 3 seconds in a row;
  0 when it never fell; ``None`` when it did not happen before the run ended.
* requests reaching a downstream: arrivals the simulator counted per second.
* a downstream's load, per second, as the simulator measured it: requests
  waiting for a worker and workers busy (time averages, and peaks), requests
  it completed, and requests it finished for a caller who had gone (wasted).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .collect import ModeRun, ScenarioRun
from .load import Result
from .timeline import Cost, Headline, Scenario

RECOVERED = 0.95
HOLD = 3
#: Which route calls each downstream (for requests reaching it per request sent).
CALLER = {
    "payment": "POST /orders",
    "inventory": "POST /orders",
    "notification": "POST /orders",
    "analytics": "POST /orders",
    "recommendations": "GET /recommendations",
}
#: Two figures closer than this share of the larger are a tie.
TIE = 0.05


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, linear between closest ranks.

    Returns:
        ``None`` for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def time_to_recover(
    success: Sequence[float | None], end: float, *, threshold: float = RECOVERED, hold: int = HOLD
) -> float | None:
    """Seconds after ``end`` until the success rate stays >= ``threshold`` for ``hold`` s.

    Args:
        success: The success rate of each second of the run (``None``: no request).
        end: When the fault ended, in seconds from the start.
        threshold: The success rate that counts as recovered.
        hold: How many seconds in a row it must hold.

    Returns:
        The first whole second from ``end`` on that begins ``hold`` good seconds,
        minus ``end``; ``None`` if there is none before the series ends.
    """
    first = math.ceil(end)
    for s in range(first, len(success) - hold + 1):
        if all(v is not None and v >= threshold for v in success[s : s + hold]):
            return round(max(0.0, s - end), 3)
    return None


def summarize(results: Iterable[Result], seconds: float) -> dict[str, Any]:
    """Counts, goodput, success rate, percentiles and errors by kind of some requests."""
    rows = list(results)
    ok = [r for r in rows if r.ok]
    latencies = [r.latency for r in rows if r.error != "dropped"]
    served = [r.latency for r in ok]
    errors = Counter(r.error for r in rows if r.error is not None)
    p50 = percentile(latencies, 50)
    p99 = percentile(latencies, 99)
    p99_ok = percentile(served, 99)
    return {
        "sent": len(rows),
        "ok": len(ok),
        "degraded": sum(r.degraded for r in ok),
        "goodput": round(len(ok) / seconds, 3) if seconds > 0 else None,
        "success": round(len(ok) / len(rows), 4) if rows else None,
        "p50": None if p50 is None else round(p50, 4),
        "p99": None if p99 is None else round(p99, 4),
        "p99_ok": None if p99_ok is None else round(p99_ok, 4),
        "errors": dict(sorted(errors.items())),
    }


def per_second(results: Sequence[Result], duration: int) -> dict[str, list[Any]]:
    """Series of one route (or all): sent, ok, degraded, success rate, p50, p99 per second."""
    buckets: list[list[Result]] = [[] for _ in range(duration)]
    for r in results:
        s = int(r.at)
        if 0 <= s < duration:
            buckets[s].append(r)
    series: dict[str, list[Any]] = {
        k: [] for k in ("sent", "ok", "degraded", "success", "p50", "p99")
    }
    for bucket in buckets:
        summary = summarize(bucket, 1.0)
        for key, values in series.items():
            values.append(summary[key])
    return series


def _windows(scenario: Scenario) -> dict[str, tuple[float, float]]:
    start, end = scenario.fault
    return {
        "before": (0.0, start),
        "fault": (start, end),
        "after": (end, scenario.duration),
        "incident": (start, scenario.duration),
        "run": (0.0, scenario.duration),
    }


def _arrivals(record: Mapping[str, Any], duration: int) -> list[int]:
    counts = [0] * duration
    for s, n in record.get("by_second", []):
        if 0 <= s < duration:
            counts[s] += n
    return counts


#: A simulator's own figures per second (examples/orders/capacity.py), and how
#: a window sums them up: levels by their mean or peak, counts by their total.
LOAD_FIGURES = {
    "busy": "mean",
    "busy_peak": "peak",
    "queue": "mean",
    "queue_peak": "peak",
    "admitted": "total",
    "completed": "total",
    "wasted": "total",
    "wasted_seconds": "total",
    "abandoned": "total",
    "refused": "total",
}


def _load(record: Mapping[str, Any], duration: int) -> dict[str, list[float]]:
    """A simulator's own figures, one value per second of the run (0 where none)."""
    load = record.get("load", {})
    out = {}
    for name in LOAD_FIGURES:
        values = [0.0] * duration
        for s, v in load.get(name, []):
            if 0 <= s < duration:
                values[int(s)] = float(v)
        out[name] = values
    return out


def _load_window(load: Mapping[str, list[float]], a: float, b: float) -> dict[str, float]:
    """A simulator's figures over the seconds [a, b): means, peaks and totals."""
    first, last = math.floor(a), math.ceil(b)
    out = {}
    for name, how in LOAD_FIGURES.items():
        values = load[name][first:last]
        if how == "peak":
            out[name] = max(values, default=0.0)
        elif how == "total":
            out[name] = round(sum(values), 3)
        else:
            out[name] = round(sum(values) / len(values), 3) if values else 0.0
    return out


def _sampled(run: ModeRun) -> dict[str, Any]:
    """Breaker states, bulkheads in use and outbox depths over time, per dependency."""
    t: list[float] = []
    deps: dict[str, dict[str, list[Any]]] = {}
    cpu: list[float | None] = []
    in_flight: list[int] = []
    for sample in sorted(run.samples, key=lambda s: s.t):
        i = len(t)
        t.append(round(sample.t, 3))
        cpu.append(sample.cpu)
        in_flight.append(sample.in_flight)
        state = sample.state or {}
        for name, dep in state.get("dependencies", {}).items():
            entry = deps.setdefault(
                name,
                {"breaker": [None] * i, "bulkhead_in_use": [None] * i, "outbox_depth": [None] * i},
            )
            for key in entry:
                entry[key].append(dep.get(key))
        for entry in deps.values():
            for values in entry.values():
                values.extend([None] * (i + 1 - len(values)))
    return {"t": t, "cpu": cpu, "in_flight": in_flight, "dependencies": deps}


def analyze_mode(scenario: Scenario, run: ModeRun) -> dict[str, Any]:
    """Every figure of one mode in one scenario."""
    duration = math.ceil(scenario.duration)
    routes = sorted(scenario.mix)
    results = run.results
    by_route = {route: [r for r in results if r.route == route] for route in routes}
    series = {route: per_second(rows, duration) for route, rows in by_route.items()}
    series["all"] = per_second(results, duration)
    loads = {sim: _load(record, duration) for sim, record in run.simulators.items()}
    windows = {}
    for name, (a, b) in _windows(scenario).items():
        inside = [r for r in results if a <= r.at < b]
        table: dict[str, Any] = {
            route: summarize([r for r in inside if r.route == route], b - a) for route in routes
        }
        table["all"] = summarize(inside, b - a)
        seconds = range(math.floor(a), math.ceil(b))
        table["in_flight_peak"] = max((run.peaks.get(s, 0) for s in seconds), default=0)
        downstream = {}
        for sim, record in run.simulators.items():
            counts = _arrivals(record, duration)[math.floor(a) : math.ceil(b)]
            caller = CALLER.get(sim)
            caller_sent = 0 if caller is None else table.get(caller, {}).get("sent", 0)
            downstream[sim] = {
                "total": sum(counts),
                "mean": round(sum(counts) / (b - a), 3) if b > a else None,
                "peak": max(counts, default=0),
                "per_request": round(sum(counts) / caller_sent, 3) if caller_sent else None,
                **_load_window(loads[sim], a, b),
            }
        table["downstream"] = downstream
        windows[name] = table
    payment = run.simulators.get("payment", {})
    return {
        "core": run.core,
        "series": series,
        "in_flight_peaks": [run.peaks.get(s, 0) for s in range(duration)],
        "arrivals": {sim: _arrivals(rec, duration) for sim, rec in run.simulators.items()},
        "load": loads,
        "capacity": {
            sim: rec.get("load", {}).get("capacity") for sim, rec in run.simulators.items()
        },
        "sampled": _sampled(run),
        "windows": windows,
        "ttr": time_to_recover(series["all"]["success"], scenario.fault[1]),
        "fault_end": scenario.fault[1],
        "charged_twice": len(payment.get("orders_charged_twice", [])),
        "charges": payment.get("charges"),
        "cancelled": run.cancelled,
        "peak_in_flight": run.peak_in_flight,
    }


def figure(mode: Mapping[str, Any], headline: Headline) -> float | None:
    """The value of ``headline`` in one mode's figures."""
    metric = headline.metric
    if metric == "ttr":
        if headline.route is not None:
            return time_to_recover(mode["series"][headline.route]["success"], mode["fault_end"])
        return mode["ttr"]  # type: ignore[no-any-return]
    if metric == "charged_twice":
        return float(mode["charged_twice"])
    table = mode["windows"][headline.window]
    if metric == "in_flight_peak":
        return float(table["in_flight_peak"])
    if ":" in metric:
        kind, sim = metric.split(":", 1)
        entry = table["downstream"].get(sim, {})
        key = {
            "arrivals": "mean",
            "arrivals_peak": "peak",
            "amplification": "per_request",
        }.get(kind, kind)
        value = entry.get(key)
        return None if value is None else float(value)
    value = table[headline.route or "all"][metric]
    return None if value is None else float(value)


def winner(naive: float | None, seawall: float | None, better: str, metric: str) -> str:
    """``"seawall"``, ``"naive"`` or ``"tie"``; for ``ttr``, ``None`` (never) is the worst."""
    if naive is None or seawall is None:
        if metric == "ttr" and (naive is None) != (seawall is None):
            return "seawall" if naive is None else "naive"
        return "tie"
    if abs(naive - seawall) <= TIE * max(abs(naive), abs(seawall)) + 1e-9:
        return "tie"
    seawall_better = seawall > naive if better == "higher" else seawall < naive
    return "seawall" if seawall_better else "naive"


def _cost(modes: Mapping[str, Any], h: Headline, cost: Cost) -> dict[str, Any]:
    """One figure of what a forced loss costs, in the headline's window, in both modes."""
    probe = Headline(label=cost.label, metric=cost.metric, route=cost.route, window=h.window)
    return {
        "label": cost.label,
        "unit": cost.unit,
        **{mode: figure(m, probe) for mode, m in modes.items()},
    }


def analyze(run: ScenarioRun) -> dict[str, Any]:
    """The JSON of one scenario: its definition, both modes' figures and the headlines."""
    scenario = run.scenario
    modes = {mode: analyze_mode(scenario, m) for mode, m in run.modes.items()}
    headlines = []
    for h in scenario.headlines:
        values = {mode: figure(m, h) for mode, m in modes.items()}
        naive, seawall = values.get("naive"), values.get("seawall")
        headlines.append(
            {
                "label": h.label,
                "metric": h.metric,
                "route": h.route,
                "window": h.window,
                "better": h.better,
                "claimed": h.claimed,
                "unit": h.unit,
                "naive": naive,
                "seawall": seawall,
                "winner": winner(naive, seawall, h.better, h.metric),
                "forced": h.forced,
                "cost": [_cost(modes, h, c) for c in h.cost],
            }
        )
    return {
        "name": scenario.name,
        "title": scenario.title,
        "story": scenario.story,
        "mix": dict(scenario.mix),
        "duration": scenario.duration,
        "fault": list(scenario.fault),
        "steps": [
            {
                "at": s.at,
                "target": s.target,
                "fault": s.fault and dict(s.fault),
                "capacity": s.capacity and dict(s.capacity),
                "label": s.label,
            }
            for s in scenario.steps
        ],
        "focus": list(scenario.focus),
        "capacity": {sim: dict(c) for sim, c in scenario.capacity.items()},
        "t0": run.t0,
        "lag": round(run.lag, 4),
        "headlines": headlines,
        "modes": modes,
        "requests": {mode: [r.to_row() for r in m.results] for mode, m in run.modes.items()},
    }
