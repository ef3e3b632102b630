"""One real ``python -m scenarios --quick`` run per test session, shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The quick run takes about two and a half minutes; this bounds a hang.
QUICK_TIMEOUT = 300


@dataclass(frozen=True)
class QuickRun:
    html: Path
    data: dict[str, Any]
    stdout: str
    seconds: float

    def scenario(self, name: str) -> dict[str, Any]:
        return next(s for s in self.data["scenarios"] if s["name"] == name)


def descendants_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (children of children included)."""
    found = []
    needle = f"SEAWALL_SCENARIO_MARKER={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """Run the real CLI with --quick in a subprocess; return the report and its numbers."""
    out = tmp_path_factory.mktemp("scenarios") / "report.html"
    marker = f"quick-{os.getpid()}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "scenarios", "--quick", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SEAWALL_SCENARIO_MARKER": marker},
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert descendants_with_marker(marker) == []  # everything it started is gone
    data = json.loads(out.with_suffix(".json").read_text())
    return QuickRun(out, data, proc.stdout, seconds)
