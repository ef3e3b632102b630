"""The scenario runner end to end: one --quick run, its report and its numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.scenarios.conftest import ROOT, QuickRun, descendants_with_marker

# The first test to use it runs the quick scenario run (about a minute) in its setup.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAMES = [
    "payment-slow",
    "payment-down",
    "recommendations-down",
    "db-reads-failing",
    "429-storm",
    "retry-storm",
]


def test_quick_run_writes_the_report_and_its_numbers(quick_run: QuickRun) -> None:
    assert quick_run.html.stat().st_size > 1_000_000  # plotly.js is inlined: no server, no network
    text = quick_run.html.read_text()
    assert text.count("<script") >= 1 + len(NAMES)
    assert "cdn" not in text.split("<script>", 1)[0].lower()
    assert [s["name"] for s in quick_run.data["scenarios"]] == NAMES
    assert quick_run.data["meta"]["quick"] is True
    for name in NAMES:
        assert f"id='{name}'" in text
        assert f'id="plot-{name}"' in text
    # The terminal summary: one row per headline figure, and where the report is.
    assert "better" in quick_run.stdout
    assert str(quick_run.html) in quick_run.stdout


def test_quick_run_takes_about_a_minute(quick_run: QuickRun) -> None:
    assert quick_run.seconds < 120, quick_run.seconds


@pytest.mark.parametrize("name", NAMES)
def test_seawall_beats_naive_on_every_claimed_figure(quick_run: QuickRun, name: str) -> None:
    """Each scenario's claimed headline figures: seawall is better, read from report.json."""
    scenario = quick_run.scenario(name)
    claimed = [h for h in scenario["headlines"] if h["claimed"]]
    assert claimed
    lost = [h for h in claimed if h["winner"] != "seawall"]
    assert not lost, [(h["label"], h["naive"], h["seawall"]) for h in lost]


def test_the_figures_each_scenario_is_about(quick_run: QuickRun) -> None:
    """The numbers behind the headlines, with the margins the patterns promise."""

    def fault(name: str, mode: str) -> dict:
        return quick_run.scenario(name)["modes"][mode]["windows"]["fault"]

    # Slow payment: the bulkhead bounds what a slow dependency can hold.
    assert (
        fault("payment-slow", "seawall")["in_flight_peak"]
        < fault("payment-slow", "naive")["in_flight_peak"]
    )
    # Hung payment: orders fail within seawall's 8 s attempt timeout, not naive's 10 s and more.
    assert (
        fault("payment-down", "seawall")["POST /orders"]["p99"]
        < fault("payment-down", "naive")["POST /orders"]["p99"]
    )
    # Recommendations down: seawall answers every page (degraded), naive fails them.
    recs = fault("recommendations-down", "seawall")["GET /recommendations"]
    assert recs["success"] >= 0.95
    assert recs["degraded"] == recs["ok"]
    assert fault("recommendations-down", "naive")["GET /recommendations"]["success"] < 0.5
    # Reads failing: stale products from the cache, marked degraded.
    products = fault("db-reads-failing", "seawall")["GET /products"]
    assert products["success"] >= 0.95
    assert products["degraded"] > 0
    assert fault("db-reads-failing", "naive")["GET /products"]["success"] < 0.5
    # 429s and the retry storm: naive multiplies the load on payment, seawall does not.
    for name in ("429-storm", "retry-storm"):
        naive = fault(name, "naive")["downstream"]["payment"]["per_request"]
        seawall = fault(name, "seawall")["downstream"]["payment"]["per_request"]
        assert naive >= 4 * seawall, (name, naive, seawall)
    storm = quick_run.scenario("retry-storm")["modes"]
    offered = quick_run.scenario("retry-storm")["mix"]["POST /orders"]
    assert fault("retry-storm", "naive")["downstream"]["payment"]["mean"] > 3 * offered
    assert fault("retry-storm", "seawall")["downstream"]["payment"]["mean"] < 1.5 * offered
    # Payment keys every charge: however often a seawall order was retried, it was charged once.
    assert all(s["modes"]["seawall"]["charged_twice"] == 0 for s in quick_run.data["scenarios"])
    assert storm["seawall"]["charges"] is not None


def test_the_load_is_open_loop_and_the_same_for_both(quick_run: QuickRun) -> None:
    """Both services got the same arrivals whatever they answered, at the offered rate."""
    for scenario in quick_run.data["scenarios"]:
        # Rows are [at, route, status, latency, error, degraded], in the order they ended.
        sent = {
            mode: sorted((row[0], row[1]) for row in rows if row[4] != "dropped")
            for mode, rows in scenario["requests"].items()
        }
        assert sent["naive"] == sent["seawall"]
        offered = sum(scenario["mix"].values()) * scenario["duration"]
        assert abs(len(sent["naive"]) - offered) <= len(scenario["mix"]), scenario["name"]
        assert scenario["lag"] < 0.5  # the generator kept to its schedule


@pytest.mark.parametrize("how", ["SIGINT to the group (Ctrl-C)", "SIGTERM"])
def test_interrupted_run_leaves_no_process_behind(tmp_path, how: str) -> None:
    """Stopped midway, the runner stops every process it started and exits 130."""
    marker = f"interrupt-{os.getpid()}-{how[:6]}"
    command = [sys.executable, "-m", "scenarios", "--quick", "--only", "recommendations-down"]
    proc = subprocess.Popen(
        [*command, "--out", str(tmp_path / "r.html")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SEAWALL_SCENARIO_MARKER": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # Not on a terminal, the progress bar prints a line per stage: wait for the scenario's.
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"1/1 recommendations-down" in line:
                break
        assert len(descendants_with_marker(marker)) == 13  # the runner and 2 x 6 processes
        time.sleep(3)  # mid-scenario: the fault is on, requests are in flight
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    assert descendants_with_marker(marker) == []
    assert not (tmp_path / "r.html").exists()
