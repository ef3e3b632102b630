"""Run the benchmarks: ``python -m benchmarks [--quick] [name ...]``.

Each ``benchmarks/bench_<name>.py`` has a ``main() -> list[Table]``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if "--quick" in argv:
        os.environ["SEAWALL_BENCH_QUICK"] = "1"
        argv = [a for a in argv if a != "--quick"]
    here = Path(__file__).resolve().parent
    available = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    chosen = argv or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    from benchmarks import _harness

    for name in chosen:
        print(f"\n# {name}")
        module = importlib.import_module(f"benchmarks.bench_{name}")
        tables = module.main()
        print(f"\n(saved {_harness.save(name, tables)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
