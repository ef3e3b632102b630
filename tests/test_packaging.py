"""Packaging promises: a dependency-free core, and lock files that pin without indexes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CORE_MODULES = [
    "seawall",
    "seawall.breaker",
    "seawall.core.breaker_state",
    "seawall.core.window",
    "seawall.events",
    "seawall.errors",
    "seawall.testing",
    "seawall.health",
    "seawall.dependency",
    "seawall.registry",
    "seawall.retry",
    "seawall.timeouts",
    "seawall.bulkhead",
    "seawall.outbox",
    "seawall.chaos",
    "seawall.fallback",
]


def test_core_imports_without_site_packages() -> None:
    """`import seawall` works on a bare interpreter: no third-party import at all."""
    probe = (
        "import sys; sys.path.insert(0, {src!r}); "
        "before = set(sys.modules); "
        "import importlib; [importlib.import_module(m) for m in {mods!r}]; "
        "import sysconfig; std = sysconfig.get_paths()['stdlib']; "
        "bad = [n for n, m in sys.modules.items() if n not in before "
        "and getattr(m, '__file__', None) and not m.__file__.startswith(std) "
        "and not m.__file__.startswith({src!r})]; "
        "print(bad); sys.exit(1 if bad else 0)"
    ).format(src=str(ROOT / "src"), mods=CORE_MODULES)
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_files_pin_with_hashes_and_name_no_index() -> None:
    """Every requirement is pinned with a hash; no lock records a package index address."""
    locks = sorted((ROOT / "requirements").glob("*.txt"))
    assert locks
    for lock in locks:
        text = lock.read_text()
        assert not re.search(r"--(extra-)?index-url|--find-links|https?://", text), lock.name
        for line in text.splitlines():
            if line and not line.startswith((" ", "#")):
                assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==\S+ \\$", line), (lock.name, line)
