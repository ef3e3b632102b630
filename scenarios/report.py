"""The report: one static HTML file (plotly.js inlined once), and a terminal summary.

Each scenario gets one picture -- naive on the left, seawall on the right, the
same scales side by side, the fault shaded -- and a table of its headline
figures. The page needs no server and no network: open the file.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

MODES = ("naive", "seawall")
ROUTE_COLORS = {
    "POST /orders": "#1f77b4",
    "GET /products": "#2ca02c",
    "GET /recommendations": "#9467bd",
}
DOWNSTREAM_COLORS = {
    "payment": "#d62728",
    "inventory": "#8c564b",
    "notification": "#e377c2",
    "recommendations": "#9467bd",
    "analytics": "#7f7f7f",
}
#: The latency axis, in seconds: from 2 ms to past the client's 30 s timeout.
LATENCY_RANGE = (0.002, 40.0)
BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 2, "disabled": 0}
ROWS = (
    "latency (s)",
    "success (%)",
    "goodput (/s)",
    "reaching (/s)",
    "at the downstream",
    "breaker",
    "in flight",
)
#: The row of each panel (1-based), by what it shows.
ROW = {
    name: i
    for i, name in enumerate(
        ("latency", "success", "goodput", "reaching", "load", "breaker", "in_flight"), start=1
    )
}
CAPTION = (
    "Rows, top to bottom: latency per route (log scale; p99 solid, p50 dotted); success rate"
    " per route; goodput per route (2xx answers per second, solid) against the offered load"
    " (requests sent per second, dotted); requests reaching each downstream per second"
    " (retries and compensations included); the downstream in focus as its simulator saw"
    " itself: requests waiting for a worker (solid), busy workers (dashed), and requests it"
    " finished for callers who had gone, per second (wasted, dotted); breaker state of the"
    " dependency in focus (0 closed, 1 half-open, 2 open; also shaded red/amber over the rows"
    " above); requests in flight at the client (peak per second) and calls holding a bulkhead"
    " permit. The fault is shaded grey; dotted lines mark each step of the timeline."
)

DEFINITIONS = """
<ul class="defs">
<li><b>Load</b>: open loop, a constant arrival rate per route whatever the service does (a slow
server is not hidden by fewer requests being sent); the same schedule and the same fault
timeline hit both services at the same time, each on its own stack (own simulators), each stack
pinned to a core of its own when the machine has two.</li>
<li>A request belongs to the second it was <b>sent</b> in. <b>Latency</b> is how long the client
waited, answered or not (a fast 503 is a short wait; the client gives up at 30 s).</li>
<li><b>Success rate</b>: 2xx answers / requests sent. <b>Goodput</b>: 2xx answers per second
(degraded answers included, counted apart).</li>
<li><b>Time to recover</b>: seconds from the end of the fault to the first second from which the
success rate of all routes stays &ge; 95 % for 3 s; 0 when it never fell, &ldquo;not within the
run&rdquo; when it did not happen before the run ended.</li>
<li><b>Requests reaching a downstream</b>: what its simulator counted, retries and compensations
(refunds, releases) included. <b>Per request</b>: those arrivals / requests sent to the route that
calls it.</li>
<li><b>Claimed</b> figures are what the pattern promises (the tests check them);
<b>trade-offs</b> are shown beside them, unclaimed, whichever way they go.</li>
</ul>
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1400px; color: #222; }
h1 { margin-bottom: .2rem; }
h2 { margin-top: 2.5rem; border-top: 1px solid #ccc; padding-top: 1rem; }
.meta, .story { color: #444; max-width: 70rem; } .defs { color: #444; font-size: .92rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.seawall { background: #e6f4ea; } .naive { background: #fdecea; } .tie { background: #f4f4f4; }
.tradeoff td { color: #555; font-style: italic; }
.cost td { color: #7a4b00; font-size: 90%; padding-left: 2em; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _fmt(value: float | None, unit: str = "", *, metric: str = "") -> str:
    if value is None:
        return "not within the run" if metric == "ttr" else "-"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "/s":
        return f"{value:.1f}/s"
    if abs(value - round(value)) < 1e-9:
        return f"{round(value)}"
    return f"{value:.2f}"


def _ms(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else max(v, 1e-3) for v in values]


def _pct(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else 100 * v for v in values]


def _breaker_spans(
    t: Sequence[float], states: Sequence[str | None]
) -> list[tuple[float, float, str]]:
    # A state sampled at t[i] holds until the next sample (the "hv" step of the breaker row).
    spans = []
    for i, state in enumerate(states[:-1]):
        if state in ("open", "half_open", "forced_open"):
            spans.append((t[i], t[i + 1], state))
    return spans


def _top(scenario: Mapping[str, Any], kind: str) -> float:
    """The top of a row's y axis: 10 % over the largest value of either mode."""
    top = 1.0
    for data in scenario["modes"].values():
        if kind == "arrivals":
            values = [v for counts in data["arrivals"].values() for v in counts]
        elif kind == "goodput":
            values = [v for series in data["series"].values() for v in series["sent"]]
        elif kind == "load":
            values = [
                v
                for sim in scenario["focus"]
                for key in ("queue", "busy", "wasted")
                for v in data.get("load", {}).get(sim, {}).get(key, [])
            ]
        else:
            values = list(data["in_flight_peaks"])
            for dep in data["sampled"]["dependencies"].values():
                values += [v for v in dep["bulkhead_in_use"] if v is not None]
        top = max(top, *values) if values else top
    return top * 1.1


def _line(
    fig: go.Figure,
    row: str,
    col: int,
    x: Sequence[float],
    y: Sequence[float | None],
    *,
    name: str,
    group: str,
    line: dict[str, Any],
    legend: bool = False,
) -> None:
    """One line trace in one panel."""
    fig.add_trace(
        go.Scatter(
            x=x, y=y, name=name, legendgroup=group, line=line, showlegend=legend, mode="lines"
        ),
        row=ROW[row],
        col=col,
    )


def _route_and_load_traces(
    fig: go.Figure,
    scenario: Mapping[str, Any],
    data: Mapping[str, Any],
    seconds: Sequence[float],
    col: int,
) -> None:
    """Each route's latency, success and goodput, and the focus simulators' own load."""
    first = col == 1
    for route in sorted(scenario["mix"]):
        series = data["series"][route]
        color = ROUTE_COLORS.get(route, "#333")
        solid, dotted = {"color": color}, {"color": color, "dash": "dot"}
        _line(
            fig,
            "latency",
            col,
            seconds,
            _ms(series["p99"]),
            name=f"{route} p99",
            group=route,
            line=solid,
            legend=first,
        )
        _line(
            fig,
            "latency",
            col,
            seconds,
            _ms(series["p50"]),
            name=f"{route} p50",
            group=route,
            line=dotted,
        )
        _line(
            fig,
            "success",
            col,
            seconds,
            _pct(series["success"]),
            name=route,
            group=route,
            line=solid,
        )
        _line(
            fig,
            "goodput",
            col,
            seconds,
            series["ok"],
            name=f"{route} goodput",
            group=route,
            line=solid | {"shape": "hvh"},
        )
        _line(
            fig,
            "goodput",
            col,
            seconds,
            series["sent"],
            name=f"{route} offered",
            group=route,
            line=dotted | {"shape": "hvh"},
        )
    for sim in scenario["focus"]:
        load = data.get("load", {}).get(sim)
        if load is None:
            continue
        color = DOWNSTREAM_COLORS.get(sim, "#333")
        for key, dash, what in (
            ("queue", None, "waiting"),
            ("busy", "dash", "busy workers"),
            ("wasted", "dot", "wasted /s"),
        ):
            _line(
                fig,
                "load",
                col,
                seconds,
                load[key],
                name=f"{sim}: {what}",
                group=f"load-{sim}-{key}",
                line={"color": color, "dash": dash, "shape": "hvh"},
                legend=first,
            )


def figure(scenario: Mapping[str, Any]) -> go.Figure:  # noqa: C901 - one panel at a time
    """The picture of one scenario: naive (left) and seawall (right), seven rows over time."""
    fig = make_subplots(
        rows=len(ROWS),
        cols=2,
        shared_xaxes=True,
        shared_yaxes=True,
        vertical_spacing=0.045,
        horizontal_spacing=0.03,
        column_titles=["naive: plain httpx, 10 s timeout, 5 immediate retries", "seawall"],
        row_titles=None,
    )
    duration = scenario["duration"]
    seconds = [s + 0.5 for s in range(int(duration + 0.999))]
    legend: set[str] = set()
    for col, mode in enumerate(MODES, start=1):
        data = scenario["modes"].get(mode)
        if data is None:
            continue
        first = col == 1
        _route_and_load_traces(fig, scenario, data, seconds, col)
        for sim, counts in sorted(data["arrivals"].items()):
            if not any(counts):
                continue
            shown = first or sim not in legend  # once in the legend, from either column
            legend.add(sim)
            fig.add_trace(
                go.Scatter(
                    x=seconds,
                    y=counts,
                    name=f"reaching {sim}",
                    legendgroup=f"sim-{sim}",
                    line={"color": DOWNSTREAM_COLORS.get(sim, "#333"), "shape": "hvh"},
                    showlegend=shown,
                    mode="lines",
                ),
                row=ROW["reaching"],
                col=col,
            )
        sampled = data["sampled"]
        t = sampled["t"]
        deps = sampled["dependencies"]
        if mode == "naive" or not deps:
            fig.add_annotation(
                text="no breaker, no bulkhead",
                x=duration / 2,
                y=1,
                showarrow=False,
                row=ROW["breaker"],
                col=col,
                font={"color": "#999"},
            )
        for name in scenario["focus"]:
            dep = deps.get(name)
            if dep is None:
                continue
            levels = [None if s is None else BREAKER_LEVEL.get(s, 0) for s in dep["breaker"]]
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=levels,
                    name=f"{name} breaker",
                    legendgroup=f"breaker-{name}",
                    line={"shape": "hv", "color": DOWNSTREAM_COLORS.get(name, "#d62728")},
                    fill="tozeroy",
                    showlegend=True,
                    mode="lines",
                ),
                row=ROW["breaker"],
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=dep["bulkhead_in_use"],
                    name=f"{name} bulkhead in use",
                    legendgroup=f"bulkhead-{name}",
                    showlegend=True,
                    mode="lines",
                    line={
                        "shape": "hv",
                        "color": DOWNSTREAM_COLORS.get(name, "#d62728"),
                        "dash": "dash",
                    },
                ),
                row=ROW["in_flight"],
                col=col,
            )
            for start, end, state in _breaker_spans(t, dep["breaker"]):
                for row in range(1, ROW["breaker"]):
                    fig.add_vrect(
                        x0=start,
                        x1=end,
                        row=row,
                        col=col,
                        line_width=0,
                        layer="below",
                        fillcolor="#d62728" if state != "half_open" else "#ff9f1c",
                        opacity=0.08,
                    )
        fig.add_trace(
            go.Scatter(
                x=seconds,
                y=data["in_flight_peaks"],
                name="in flight at the client (peak)",
                legendgroup="inflight",
                line={"color": "#333", "shape": "hvh"},
                showlegend=first,
                mode="lines",
            ),
            row=ROW["in_flight"],
            col=col,
        )
        start, end = scenario["fault"]
        for row in range(1, len(ROWS) + 1):
            fig.add_vrect(
                x0=start,
                x1=end,
                row=row,
                col=col,
                fillcolor="#888",
                opacity=0.12,
                line_width=0,
                layer="below",
            )
        for step in scenario["steps"]:
            fig.add_vline(
                x=step["at"], row="all", col=col, line={"color": "#888", "width": 1, "dash": "dot"}
            )
            fig.add_annotation(
                x=step["at"],
                y=1.0,
                yref="y domain",
                text=html.escape(step["label"] or step["target"]),
                showarrow=False,
                xanchor="left",
                font={"size": 10, "color": "#555"},
                row=ROW["latency"],
                col=col,
            )
    for row, title in enumerate(ROWS, start=1):
        fig.update_yaxes(title_text=title, title_font={"size": 12}, row=row, col=1)
    # Fixed ranges: the same scale in both columns, and in every scenario for latency.
    fig.update_yaxes(
        type="log",
        range=[math.log10(LATENCY_RANGE[0]), math.log10(LATENCY_RANGE[1])],
        row=ROW["latency"],
    )
    fig.update_yaxes(range=[-5, 105], row=ROW["success"])
    fig.update_yaxes(range=[0, _top(scenario, "goodput")], row=ROW["goodput"])
    fig.update_yaxes(range=[0, _top(scenario, "arrivals")], row=ROW["reaching"])
    fig.update_yaxes(range=[0, _top(scenario, "load")], row=ROW["load"])
    fig.update_yaxes(range=[-0.1, 2.3], tickvals=[0, 1, 2], row=ROW["breaker"])
    fig.update_yaxes(range=[0, _top(scenario, "in_flight")], row=ROW["in_flight"])
    fig.update_xaxes(title_text="seconds", row=len(ROWS))
    fig.update_xaxes(range=[0, duration])
    fig.update_layout(
        height=1550,
        margin={"l": 70, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.06},
        template="plotly_white",
        hovermode="x unified",
    )
    return fig


def _headline_table(scenario: Mapping[str, Any]) -> str:
    rows = []
    for h in scenario["headlines"]:
        cls = "" if h["claimed"] else ' class="tradeoff"'
        kind = "claimed" if h["claimed"] else "trade-off"
        rows.append(
            f"<tr{cls}><td class=l>{html.escape(h['label'])}</td><td class=l>{kind}</td>"
            f"<td>{_fmt(h['naive'], h['unit'], metric=h['metric'])}</td>"
            f"<td>{_fmt(h['seawall'], h['unit'], metric=h['metric'])}</td>"
            f"<td class='{h['winner']}'>{h['winner']}</td></tr>"
        )
        if h.get("forced") and h["winner"] == "naive":
            rows.append(_cost_row(h))
    return (
        "<table><tr><th class=l>headline figure</th><th class=l></th><th>naive</th>"
        f"<th>seawall</th><th>better</th></tr>{''.join(rows)}</table>"
    )


def _cost_row(h: Mapping[str, Any]) -> str:
    """Under a figure seawall loses by a rule: what the naive figure costs, same window."""
    parts = [
        f"{html.escape(c['label'])} {_fmt(c.get('naive'), c['unit'])}"
        f" (seawall {_fmt(c.get('seawall'), c['unit'])})"
        for c in h.get("cost", [])
    ]
    return (
        f"<tr class=cost><td class=l colspan=5>forced by a rule ({html.escape(h['forced'])})."
        f" What the naive figure costs: {'; '.join(parts)}.</td></tr>"
    )


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "none"


def _detail_table(scenario: Mapping[str, Any]) -> str:
    rows = []
    for route in [*sorted(scenario["mix"]), "all"]:
        for mode in MODES:
            data = scenario["modes"].get(mode)
            if data is None:
                continue
            w = data["windows"]["fault"][route]
            after = data["windows"]["after"][route]
            rows.append(
                f"<tr><td class=l>{html.escape(route)}</td><td class=l>{mode}</td>"
                f"<td>{w['sent']}</td><td>{_fmt(w['goodput'], '/s')}</td>"
                f"<td>{_fmt(None if w['success'] is None else 100 * w['success'])} %</td>"
                f"<td>{w['degraded']}</td><td>{_fmt(w['p50'], 's')}</td>"
                f"<td>{_fmt(w['p99'], 's')}</td>"
                f"<td class=l>{html.escape(_errors(w['errors']))}</td>"
                f"<td>{_fmt(after['p99'], 's')}</td>"
                f"<td class=l>{html.escape(_errors(after['errors']))}</td></tr>"
            )
    other = []
    for mode in MODES:
        data = scenario["modes"].get(mode)
        if data is None:
            continue
        down = data["windows"]["fault"]["downstream"]
        reach = ", ".join(
            f"{sim} {d['mean']:.1f}/s (peak {d['peak']})"
            for sim, d in sorted(down.items())
            if d["total"]
        )
        other.append(
            f"<tr><td class=l>{mode}</td><td>{_fmt(data['ttr'], 's', metric='ttr')}</td>"
            f"<td>{data['charged_twice']}</td><td>{data['windows']['fault']['in_flight_peak']}</td>"
            f"<td>{data['cancelled']}</td><td class=l>{html.escape(reach)}</td>"
            f"<td class=l>{html.escape(_load_text(scenario, data))}</td></tr>"
        )
    return (
        "<table><tr><th class=l>route</th><th class=l>mode</th><th>sent</th><th>goodput</th>"
        "<th>success</th><th>degraded</th><th>p50</th><th>p99</th><th class=l>errors by kind</th>"
        "<th>p99 after</th><th class=l>errors after</th></tr>"
        f"{''.join(rows)}</table><p>During the fault: sent, goodput, success, latency, errors."
        " After: from the end of the fault to the end of the run.</p>"
        "<table><tr><th class=l>mode</th><th>time to recover</th><th>orders charged twice</th>"
        "<th>in flight, peak</th><th>unfinished</th><th class=l>requests reaching downstreams"
        " during the fault</th><th class=l>the downstream in focus, during the fault / after"
        " it</th></tr>"
        f"{''.join(other)}</table>"
    )


def _load_text(scenario: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The focus simulators' own figures, during the fault and after it, in a line."""
    parts = []
    for sim in scenario["focus"]:
        fault = data["windows"]["fault"]["downstream"].get(sim)
        after = data["windows"]["after"]["downstream"].get(sim)
        if not fault or not after or "busy" not in fault:
            continue
        workers = (data.get("capacity", {}).get(sim) or {}).get("workers")
        of = "" if workers is None else f" of {workers}"
        parts.append(
            f"{sim}: busy {fault['busy']:.1f}{of} / {after['busy']:.1f}, waiting at most"
            f" {fault['queue_peak']:.0f} / {after['queue_peak']:.0f}, wasted"
            f" {fault['wasted']:.0f} / {after['wasted']:.0f}"
        )
    return "; ".join(parts) or "-"


def _summary_table(report: Mapping[str, Any]) -> str:
    rows = []
    for scenario in report["scenarios"]:
        for h in scenario["headlines"]:
            cls = "" if h["claimed"] else ' class="tradeoff"'
            rows.append(
                f"<tr{cls}><td class=l><a href='#{scenario['name']}'>"
                f"{html.escape(scenario['title'])}</a></td>"
                f"<td class=l>{html.escape(h['label'])}</td>"
                f"<td class=l>{'claimed' if h['claimed'] else 'trade-off'}</td>"
                f"<td>{_fmt(h['naive'], h['unit'], metric=h['metric'])}</td>"
                f"<td>{_fmt(h['seawall'], h['unit'], metric=h['metric'])}</td>"
                f"<td class='{h['winner']}'>{h['winner']}</td></tr>"
            )
    return (
        "<table><tr><th class=l>scenario</th><th class=l>figure</th><th class=l></th>"
        f"<th>naive</th><th>seawall</th><th>better</th></tr>{''.join(rows)}</table>"
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report as one HTML page (plotly.js inlined once)."""
    meta = report["meta"]
    sections = []
    for scenario in report["scenarios"]:
        fig = figure(scenario)
        plot = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{scenario['name']}",
            config={"displaylogo": False, "responsive": True},
        )
        mix = ", ".join(f"{route} {rate:g}/s" for route, rate in sorted(scenario["mix"].items()))
        sections.append(
            f"<section id='{scenario['name']}'><h2>{html.escape(scenario['title'])}</h2>"
            f"<p class=story>{html.escape(scenario['story'])}</p>"
            f"<p class=meta>Load: {html.escape(mix)}, for {scenario['duration']:g} s; the fault"
            f" from {scenario['fault'][0]:g} s to {scenario['fault'][1]:g} s (shaded).</p>"
            f"{_headline_table(scenario)}{plot}<p class=meta>{CAPTION}</p>"
            f"{_detail_table(scenario)}</section>"
        )
    if "fleet" in report:
        from .fleet import section  # noqa: PLC0415 - only with --fleet

        sections.append(section(report["fleet"]))
    pins = (
        ", ".join(f"{m} on core {c}" for m, c in meta["pins"].items() if c is not None)
        or "not pinned"
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in meta.get("notes", []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>seawall: naive vs seawall under faults</title>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>seawall: the same faults, naive and with seawall</h1>
<p class=meta>The order service of <code>examples/orders</code>, wired naively (plain httpx,
a 10 s timeout, 5 immediate retries, no breaker, one shared pool) and with seawall
(<code>examples/orders/policies.toml</code>), side by side under the same load and the same
fault timelines. Produced by <code>{html.escape(meta["command"])}</code>
on {html.escape(meta["started"])} in {meta["elapsed"]:.0f} s; {meta["cores"]} cores
({html.escape(pins)}); seawall {html.escape(meta["version"])}.</p>
{DEFINITIONS}
<ul class=defs>{notes}</ul>
<h2>Summary</h2>
{_summary_table(report)}
{"".join(sections)}
<script type="application/json" id="report-data">{_embedded(report)}</script>
</body></html>
"""


def _embedded(report: Mapping[str, Any]) -> str:
    # The headline figures, for a reader's tools; "</" cannot end the script early.
    return json.dumps(_without_requests(report)).replace("</", "<\\/")


def _without_requests(report: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "meta": report["meta"],
        "scenarios": [
            {k: v for k, v in s.items() if k not in ("requests", "modes")}
            for s in report["scenarios"]
        ],
    }


def summary_text(report: Mapping[str, Any]) -> str:
    """A plain-text table of every headline figure, for the terminal."""
    header = ("scenario", "figure", "naive", "seawall", "better")
    rows = [header]
    for scenario in report["scenarios"]:
        for h in scenario["headlines"]:
            label = h["label"] + ("" if h["claimed"] else " (trade-off)")
            if h.get("forced") and h["winner"] == "naive":
                label += " (forced: see the report for its cost)"
            rows.append(
                (
                    scenario["name"],
                    label,
                    _fmt(h["naive"], h["unit"], metric=h["metric"]),
                    _fmt(h["seawall"], h["unit"], metric=h["metric"]),
                    h["winner"],
                )
            )
    widths = [min(max(len(r[i]) for r in rows), 72) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell[: widths[i]].ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    fleets = report.get("fleet", {}).get("fleets", {})
    if fleets:
        counts = ", ".join(f"{name} {data['after_warmup']:.0f}" for name, data in fleets.items())
        lines.append(f"\nfleet (3 replicas, payment down): charge requests reaching it: {counts}")
    return "\n".join(lines)
