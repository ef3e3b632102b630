"""The report in a real headless browser: it renders, every plot draws, no console message.

Debian's chromium (installed by ``scripts/ensure-browser``, which the test
command runs) loads the file from disk, with no server and no network. A
screenshot is kept under ``artifacts/`` at the repository root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.scenarios.conftest import ROOT, QuickRun

# The first test to use it runs the quick scenario run (about 2.5 minutes) in its setup.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ARTIFACTS = ROOT / "artifacts"


def browser() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium: scripts/ensure-browser installs Debian's")


def headless(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            # Long enough for every plot to draw; virtual time, so it costs nothing when idle.
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    # The report's own scripts log nothing, so any console line (error, warning,
    # log) or uncaught exception is a failure.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_report_renders_every_plot_without_console_messages(quick_run: QuickRun, tmp_path) -> None:
    url = quick_run.html.resolve().as_uri()
    dom = headless(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    html = dom.stdout
    plots = re.split(r'<div id="plot-', html)[1:]
    names = [s["name"] for s in quick_run.data["scenarios"]]
    assert [p.split('"', 1)[0] for p in plots] == names
    for name, plot in zip(names, plots, strict=True):
        assert 'class="main-svg"' in plot, f"{name}: no svg drawn"
        lines = re.findall(r'class="js-line" d="M[^"]+"', plot)
        assert len(lines) >= 10, f"{name}: only {len(lines)} lines drawn"

    shot = tmp_path / "report.png"
    taken = headless(
        tmp_path / "profile-shot",
        "--hide-scrollbars",
        "--window-size=1400,6000",
        f"--screenshot={shot}",
        url,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert console_messages(taken.stderr) == []
    assert shot.stat().st_size > 50_000  # a picture, not a blank page
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "scenarios-report.png")
    shutil.copy(quick_run.html, ARTIFACTS / "scenarios-report.html")
