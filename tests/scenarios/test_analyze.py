"""The figures of the report, from synthetic requests: percentiles, recovery, windows."""

from __future__ import annotations

import itertools
import math

import pytest
from scenarios.analyze import (
    _load,
    _load_window,
    _windows,
    figure,
    per_second,
    percentile,
    summarize,
    time_to_recover,
    winner,
)
from scenarios.load import Result, schedule
from scenarios.report import summary_text
from scenarios.timeline import metastable


def req(
    at: float, latency: float = 0.01, error: str | None = None, route: str = "GET /products"
) -> Result:
    return Result(at, 0.0, route, 200 if error is None else 503, latency, error)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order does not matter
        (list(map(float, range(1, 101))), 99, 99.01),
    ],
)
def test_percentile_is_linear_between_closest_ranks(values, q, expected) -> None:
    result = percentile(values, q)
    assert result == (None if expected is None else pytest.approx(expected))


def test_p99_of_a_slow_tail() -> None:
    latencies = [0.01] * 98 + [5.0, 9.0]
    assert percentile(latencies, 50) == pytest.approx(0.01)
    assert percentile(latencies, 99) == pytest.approx(5.0 + 0.01 * 4.0)


def test_time_to_recover_needs_three_good_seconds_in_a_row() -> None:
    success = [1, 1, 0, 0, 0, 0.5, 0.96, 0.2, 1, 1, 1, 1]
    # The fault ends at 5: second 6 is good but 7 is not; 8, 9, 10 hold.
    assert time_to_recover(success, 5.0) == 3.0
    assert time_to_recover(success, 4.5) == 3.5  # from the end of the fault, not a whole second


def test_time_to_recover_is_zero_when_it_never_fell_and_none_when_it_never_came_back() -> None:
    assert time_to_recover([1.0] * 10, 4.0) == 0.0
    assert time_to_recover([1, 1, 0, 0, 1, 1], 2.0) is None  # only 2 good seconds left
    assert (
        time_to_recover([1, 0, None, 1, 1, 1], 1.0) == 2.0
    )  # a second with no request is not good


def test_summarize_counts_goodput_success_errors_and_degraded() -> None:
    rows = [req(0.1), req(0.2, 0.5), req(0.3, 2.0, "http_503"), req(0.4, 30.0, "timeout")]
    rows.append(Result(0.5, 0.0, "GET /products", 200, 0.02, None, degraded=True))
    rows.append(Result(0.6, 0.0, "GET /products", 0, 0.0, "dropped"))
    s = summarize(rows, seconds=2.0)
    assert (s["sent"], s["ok"], s["degraded"]) == (6, 3, 1)
    assert s["goodput"] == 1.5
    assert s["success"] == 0.5
    assert s["errors"] == {"dropped": 1, "http_503": 1, "timeout": 1}
    assert s["p50"] == pytest.approx(0.5)  # the dropped request was never sent: no latency


def test_per_second_puts_each_request_in_the_second_it_was_sent() -> None:
    rows = [req(0.2), req(0.7, error="http_503"), req(1.1, latency=9.0), req(3.5)]
    series = per_second(rows, 4)
    assert series["sent"] == [2, 1, 0, 1]
    assert series["success"] == [0.5, 1.0, None, 1.0]
    assert series["p99"][1] == 9.0  # answered 9 s later, counted in the second it left


def test_winner_respects_direction_ties_and_never_recovered() -> None:
    assert winner(10.0, 5.0, "lower", "p99") == "seawall"
    assert winner(10.0, 5.0, "higher", "goodput") == "naive"
    assert winner(10.0, 10.2, "higher", "goodput") == "tie"
    assert winner(None, 3.0, "lower", "ttr") == "seawall"  # naive never recovered
    assert winner(0.0, None, "lower", "ttr") == "naive"
    assert winner(None, None, "lower", "ttr") == "tie"


def test_schedule_is_a_constant_rate_per_route_interleaved() -> None:
    arrivals = schedule({"POST /orders": 10, "GET /products": 5}, duration=2.0)
    orders = [a.at for a in arrivals if a.route == "POST /orders"]
    products = [a.at for a in arrivals if a.route == "GET /products"]
    assert len(orders) == 20
    assert len(products) == 10
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(orders))
    assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)
    assert set(products).isdisjoint(orders)  # the routes do not fire at the same instants


def test_summary_text_is_a_table_of_headlines() -> None:
    report = {
        "scenarios": [
            {
                "name": "x",
                "headlines": [
                    {
                        "label": "p99",
                        "claimed": True,
                        "unit": "s",
                        "metric": "p99",
                        "naive": 10.0,
                        "seawall": 0.05,
                        "winner": "seawall",
                    },
                    {
                        "label": "recovery",
                        "claimed": False,
                        "unit": "s",
                        "metric": "ttr",
                        "naive": 0.0,
                        "seawall": None,
                        "winner": "naive",
                    },
                ],
            }
        ]
    }
    text = summary_text(report)
    assert "10.0 s" in text
    assert "0.050 s" in text
    assert "not within the run" in text
    assert "recovery (trade-off)" in text


def test_a_simulators_own_figures_line_up_with_the_runs_seconds_and_sum_by_window() -> None:
    """Levels by their mean or peak, counts by their total; absent seconds are zero."""
    record = {
        "load": {
            "busy": [[0, 2.0], [1, 4.0], [3, 4.0], [9, 1.0]],  # 9: past the run, dropped
            "queue_peak": [[1, 7], [2, 3]],
            "wasted": [[2, 5], [3, 1]],
            "completed": [[-1, 4], [0, 3]],  # -1: before the run, dropped
        }
    }
    load = _load(record, 4)
    assert load["busy"] == [2.0, 4.0, 0.0, 4.0]
    assert load["completed"] == [3.0, 0.0, 0.0, 0.0]
    assert load["abandoned"] == [0.0] * 4  # a figure the simulator did not report
    window = _load_window(load, 1.0, 4.0)
    assert window["busy"] == pytest.approx((4.0 + 0.0 + 4.0) / 3, abs=0.001)
    assert window["queue_peak"] == 7
    assert window["wasted"] == 6
    assert _load_window(load, 0.0, 1.0)["wasted"] == 0


def test_time_to_recover_of_one_route_and_the_incident_window() -> None:
    scenario = metastable(quick=True)
    start, end = scenario.fault
    assert _windows(scenario)["incident"] == (start, scenario.duration)
    duration = math.ceil(scenario.duration)
    success = [1.0] * duration
    for s in range(math.floor(start), math.ceil(end) + 4):  # back 4 s after the trigger
        success[s] = 0.0
    mode = {"series": {"POST /orders": {"success": success}}, "fault_end": end, "ttr": None}
    ttr = next(h for h in scenario.headlines if h.metric == "ttr")
    assert figure(mode, ttr) == 4.0
