"""The fleet scenario: three replicas probing a down payment service, shared vs not.

Run the way a reader would: ``python -m scenarios --fleet`` (with one short
scenario before it), so the report's seventh section is what is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_shared_fleet_sends_fewer_probes(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    command = [sys.executable, "-m", "scenarios", "--quick", "--fleet"]
    command += ["--only", "recommendations-down", "--out", str(out)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    fleets = json.loads(out.with_suffix(".json").read_text())["fleet"]["fleets"]
    shared, alone = fleets["shared"]["after_warmup"], fleets["not shared"]["after_warmup"]
    # Half-open probes: one replica per probe period, not every replica.
    assert shared >= 1  # it still probes (and so can recover)
    assert shared < alone
    page = out.read_text()
    assert "8. A fleet of three replicas, payment down" in page
    assert 'id="plot-fleet"' in page
    assert "fleet (3 replicas, payment down)" in result.stdout
