"""``python -m scenarios``: run the fault scenarios against both wirings; write the report.

Starts the simulators and the order service twice (naive and seawall) on the
embedded defaults (SQLite, in-process cache), runs every scenario against both
at once, writes ``report.html`` and ``report.json`` (the numbers the report was
built from), and prints a summary table. A progress bar on stderr says where
it is. Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import fleet, timeline
from .analyze import analyze
from .collect import MODES, LoggedStack, pin, run_scenario, start_stacks, stop_stacks
from .report import render_html, summary_text

#: Seconds the progress bar expects the two stacks to take to start.
STARTUP = 4.0
#: Per scenario: at most this long for the services to go quiet before it, and
#: for answers after its last arrival (quick, full).
#: A full run waits out what seawall's compensations outbox still delivers after
#: the retry storm (about 20 s of refunds and releases), so that the next
#: scenario starts on idle downstreams; it waits only as long as that takes.
SETTLE = {True: 2.0, False: 30.0}
DRAIN = {True: 6.0, False: 12.0}


class Progress:
    """A one-line progress bar on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self, total: float, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.total = max(total, 1e-9)
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.done = 0.0
        self.label = ""
        self._last_line = ""

    def stage(self, label: str) -> None:
        """Start a new stage (a line of its own when not on a terminal)."""
        self.label = label
        if not self.tty:
            print(f"[{100 * self.done / self.total:3.0f}%] {label}", file=self.stream, flush=True)
        self.show(0.0)

    def show(self, elapsed: float) -> None:
        """Redraw the bar with ``elapsed`` seconds into the current stage."""
        if not self.tty:
            return
        share = min(1.0, (self.done + elapsed) / self.total)
        filled = round(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"\r[{bar}] {100 * share:3.0f}%  {self.label}"
        if line != self._last_line:
            self.stream.write(line.ljust(len(self._last_line)))
            self.stream.flush()
            self._last_line = line

    def advance(self, seconds: float) -> None:
        """Count a finished stage of ``seconds``."""
        self.done += seconds

    def close(self) -> None:
        """End the bar's line."""
        if self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
            self._last_line = ""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (asyncio's handler included) for the block."""

    def handler(signum: int, frame: object) -> None:
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM for the block: stopping must not be cut short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


async def run_all(
    scenarios: Sequence[timeline.Scenario],
    stacks: dict[str, LoggedStack],
    pins: dict[str, int | None],
    progress: Progress,
    *,
    quick: bool,
) -> list[dict[str, Any]]:
    """Run each scenario against every stack; return each one's analysis."""
    analyses = []
    for i, scenario in enumerate(scenarios, start=1):
        progress.stage(f"{i}/{len(scenarios)} {scenario.name} (naive and seawall at once)")
        tick: Callable[[float], None] = progress.show
        run = await run_scenario(
            scenario, stacks, pins, settle=SETTLE[quick], drain=DRAIN[quick], on_tick=tick
        )
        progress.advance(scenario.duration)
        analyses.append(analyze(run))
    return analyses


def _notes(analyses: Sequence[dict[str, Any]], pins: dict[str, int | None]) -> list[str]:
    notes = []
    lag = max((a["lag"] for a in analyses), default=0.0)
    notes.append(
        f"The load generator ran at most {lag * 1000:.0f} ms behind its schedule"
        " (a large lag would mean the machine, not the service, was the limit)."
    )
    if all(c is None for c in pins.values()):
        notes.append("Fewer cores than stacks: both stacks shared every core.")
    busiest = {}
    for mode in MODES:
        values = [
            c
            for a in analyses
            for c in a["modes"].get(mode, {}).get("sampled", {}).get("cpu", [])
            if c is not None
        ]
        if values:
            busiest[mode] = max(values)
    if busiest:
        notes.append(
            "Busiest second of each stack's core: "
            + ", ".join(f"{m} {100 * v:.0f} %" for m, v in busiest.items())
            + "."
        )
    return notes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scenarios", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="short phases: about 2.5 minutes in all"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("report.html"),
        help="the HTML report (and .json beside it)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this scenario (repeatable): "
        + ", ".join(s.name for s in timeline.scenarios()),
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="then the fleet scenario: three replicas sharing breaker state through Redis"
        " or not (needs redis-server; scripts/ensure-servers installs it)",
    )
    return parser


def _run_fleet(seconds: float, progress: Progress) -> tuple[dict[str, Any] | None, str | None]:
    """Run the fleet scenario; return its result, or why it could not run."""
    progress.stage("9 fleet: 2 x 3 replicas, payment down (shared and not)")
    try:
        return fleet.run(seconds, rate=fleet.RATE), None
    except (OSError, RuntimeError, SystemExit) as exc:
        # The eight scenarios' results are not lost for it.
        error = f"the fleet scenario could not run: {exc}"
        print(error, file=sys.stderr, flush=True)
        return None, error
    finally:
        progress.advance(seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios; return the exit status (130 when interrupted)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        scenarios = timeline.by_name(args.only, quick=args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.parent / f"{out.stem}-logs"
    started = time.monotonic()
    fleet_seconds = fleet.DURATION[args.quick] if args.fleet else 0.0
    progress = Progress(STARTUP + sum(s.duration for s in scenarios) + fleet_seconds)
    stacks: dict[str, LoggedStack] = {}
    fleet_result: dict[str, Any] | None = None
    fleet_error: str | None = None
    with sigterm_as_interrupt():
        try:
            progress.stage("starting 2 x (5 simulators + the order service)")
            stacks = start_stacks(MODES, log_dir)
            progress.advance(STARTUP)
            pins = pin(stacks)
            analyses = asyncio.run(run_all(scenarios, stacks, pins, progress, quick=args.quick))
            progress.stage("stopping")
            stop_stacks(stacks)
            stacks = {}
            if args.fleet:
                # Its own six services and Redis, after the two stacks are gone.
                fleet_result, fleet_error = _run_fleet(fleet_seconds, progress)
        except KeyboardInterrupt:
            progress.close()
            print("interrupted: stopping every process", file=sys.stderr, flush=True)
            return 130
        finally:
            with uninterrupted():
                stop_stacks(stacks)
                progress.close()
    from seawall import __version__  # noqa: PLC0415 - only for the report

    command = "python -m scenarios " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
    report: dict[str, Any] = {
        "meta": {
            "command": os.environ.get("SEAWALL_DEMO_COMMAND", command.strip()),
            "quick": args.quick,
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed": round(time.monotonic() - started, 1),
            "cores": len(os.sched_getaffinity(0)),
            "pins": pins,
            "version": __version__,
            "python": sys.version.split()[0],
            "notes": _notes(analyses, pins) + ([fleet_error] if fleet_error else []),
        },
        "scenarios": analyses,
    }
    if fleet_result is not None:
        report["fleet"] = fleet_result
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.write_text(render_html(report))
    print(summary_text(report))
    print(f"\nreport: {out}  (numbers: {out.with_suffix('.json')}; logs: {log_dir}/)")
    print(f"took {report['meta']['elapsed']:.0f} s")
    return 0
