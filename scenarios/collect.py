"""Run one scenario against both services at once and collect what happened.

Both wirings run side by side, each on its own :class:`~examples.orders.stack.Stack`
(its own five simulators), under the same arrival schedule and the same fault
timeline. On a machine with two cores or more, each stack is pinned to a core
of its own (like a one-CPU container), so one run's load cannot slow the other;
the generator and this collector float.

Once a second the collector samples each service's ``/_admin/state`` (breaker
states, bulkheads in use, outbox depths), the requests in flight at the client,
and the busy share of each stack's core. At the end it reads each simulator's
``/_control`` record: arrivals per wall-clock second, charges, double charges,
and its own load per second (queue depth, busy workers, work completed and
wasted on callers who had gone).

Between scenarios the stacks are reused, not restarted (a restart of both
costs ~4 s of CPU): faults are cleared, the seawall service is left to finish
its bulkheads and outboxes, then breakers and simulator records are reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from examples.orders.settings import DOWNSTREAMS
from examples.orders.stack import Stack

from .load import Result, Target, run_open_loop, schedule
from .timeline import DB_TARGETS, SERVICE_TARGET, Scenario, Step

MODES = ("naive", "seawall")
#: Timeout of the collector's own calls (control APIs, state samples).
CONTROL_TIMEOUT = 5.0


class LoggedStack(Stack):
    """A :class:`Stack` whose processes write their output to a log file, not our terminal."""

    def pids(self) -> list[int]:
        """The process ids of every process of the stack."""
        procs = [*self.simulators.values(), *self.services]
        return [p.popen.pid for p in procs]


def start_stacks(modes: tuple[str, ...], log_dir: Path | None) -> dict[str, LoggedStack]:
    """Start one stack per mode, in parallel; on any failure stop those that started."""
    stacks = {}
    for mode in modes:
        stack = LoggedStack(mode=mode)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            stack.log = (log_dir / f"{mode}.log").open("ab")
        stacks[mode] = stack
    try:
        with ThreadPoolExecutor(len(modes)) as pool:
            for future in [pool.submit(s.start) for s in stacks.values()]:
                future.result()
    except BaseException:
        stop_stacks(stacks)
        raise
    return stacks


#: Seconds each stack's processes get to exit after SIGTERM, before SIGKILL: the
#: runner's data is throwaway, and a naive service holding requests for its 25 s
#: deadline would otherwise keep the run waiting.
STOP_TIMEOUT = 4.0


def stop_stacks(stacks: Mapping[str, LoggedStack]) -> None:
    """Stop every stack (in parallel) and close their logs; never raises for one that fails."""
    with ThreadPoolExecutor(max(len(stacks), 1)) as pool:
        for future in [pool.submit(s.stop, STOP_TIMEOUT) for s in stacks.values()]:
            with contextlib.suppress(Exception):
                future.result()
    for stack in stacks.values():
        if stack.log is not None:
            stack.log.close()


def pin(stacks: Mapping[str, LoggedStack]) -> dict[str, int | None]:
    """Pin each stack's processes (every thread) to a core of its own, if there are enough.

    Threads started later inherit the affinity of the thread that starts them.

    Returns:
        The core of each mode, or ``None`` when it was left unpinned.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < len(stacks):
        return dict.fromkeys(stacks)
    pins: dict[str, int | None] = {}
    for core, (mode, stack) in zip(cores, stacks.items(), strict=False):
        for pid in stack.pids():
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(int(task.name), {core})
        pins[mode] = core
    return pins


class CpuMeter:
    """Busy share of each core since the previous reading, from /proc/stat."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> dict[int, tuple[int, int]]:
        out = {}
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return {}
        for line in lines:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *fields = line.split()
                values = [int(v) for v in fields]
                idle = values[3] + (values[4] if len(values) > 4 else 0)
                out[int(name[3:])] = (sum(values), idle)
        return out

    def read(self) -> dict[int, float]:
        """Per core, the busy share (0-1) since the last call."""
        now = self._read()
        busy = {}
        for core, (total, idle) in now.items():
            t0, i0 = self._last.get(core, (total, idle))
            dt = total - t0
            busy[core] = 0.0 if dt <= 0 else round(1 - (idle - i0) / dt, 3)
        self._last = now
        return busy


@dataclass
class Sample:
    """What one mode looked like at second ``t`` of the run."""

    t: float
    in_flight: int
    state: dict[str, Any] | None
    cpu: float | None


@dataclass
class ModeRun:
    """Everything collected from one mode in one scenario."""

    mode: str
    core: int | None
    results: list[Result] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    #: Per simulator: its /_control record at the end, ``by_second`` shifted to run seconds.
    simulators: dict[str, dict[str, Any]] = field(default_factory=dict)
    peak_in_flight: int = 0
    #: The most requests in flight at the client during each second.
    peaks: dict[int, int] = field(default_factory=dict)
    cancelled: int = 0


@dataclass
class ScenarioRun:
    """One scenario, both modes."""

    scenario: Scenario
    #: The wall-clock second the run started at (simulators count arrivals in these).
    t0: int
    lag: float
    modes: dict[str, ModeRun]
    cpu: list[tuple[float, dict[int, float]]] = field(default_factory=list)


async def _control(
    client: httpx.AsyncClient, method: str, url: str, body: object = None
) -> dict[str, Any] | None:
    try:
        r = await client.request(method, url, json=body, timeout=CONTROL_TIMEOUT)
        r.raise_for_status()
        return dict(r.json())
    except (httpx.HTTPError, ValueError):
        return None


async def apply_step(client: httpx.AsyncClient, stack: Stack, step: Step) -> None:
    """Set or clear the step's fault on its target in one stack (or change its capacity)."""
    assert stack.service is not None
    if step.capacity is not None:
        if step.target == SERVICE_TARGET:
            url = stack.service.url + "/_admin/capacity"
        else:
            url = stack.simulators[step.target].url + "/_control/capacity"
        await _control(client, "PUT", url, dict(step.capacity))
        return
    if step.target in DB_TARGETS:
        url = f"{stack.service.url}/_admin/faults/{step.target}"
    else:
        url = stack.simulators[step.target].url + "/_control/fault"
    method = "DELETE" if step.fault is None else "PUT"
    await _control(client, method, url, None if step.fault is None else dict(step.fault))


async def _quiet(client: httpx.AsyncClient, stack: Stack) -> bool:
    """Whether the service holds no bulkhead permit and no outbox entry."""
    assert stack.service is not None
    state = await _control(client, "GET", stack.service.url + "/_admin/state")
    if state is None:
        return False
    for dep in state.get("dependencies", {}).values():
        if dep.get("bulkhead_in_use", 0) or dep.get("outbox_depth", 0):
            return False
    return True


async def reset(client: httpx.AsyncClient, stacks: Mapping[str, Stack], settle: float) -> None:
    """Clear every fault, let the services settle (at most ``settle`` s), reset records."""
    await _everywhere(client, stacks, "DELETE", "/_admin/faults/all", "/_control/fault")
    deadline = time.monotonic() + settle
    await asyncio.sleep(min(0.5, settle))
    while time.monotonic() < deadline:
        quiet = await asyncio.gather(*(_quiet(client, s) for s in stacks.values()))
        if all(quiet):
            break
        await asyncio.sleep(0.25)
    await _everywhere(client, stacks, "POST", "/_admin/reset", "/_control/reset")


async def _everywhere(
    client: httpx.AsyncClient,
    stacks: Mapping[str, Stack],
    method: str,
    service_path: str,
    simulator_path: str,
) -> None:
    """Send one control request to every service and simulator of every stack, at once."""
    jobs = []
    for stack in stacks.values():
        assert stack.service is not None
        jobs.append(_control(client, method, stack.service.url + service_path))
        jobs += [
            _control(client, method, s.url + simulator_path) for s in stack.simulators.values()
        ]
    await asyncio.gather(*jobs)


class _Runner:
    """One scenario in progress: the timeline, the sampler and the load, on one event loop."""

    def __init__(
        self,
        scenario: Scenario,
        stacks: Mapping[str, LoggedStack],
        pins: Mapping[str, int | None],
        control: httpx.AsyncClient,
        on_tick: Callable[[float], None] | None,
    ) -> None:
        self.scenario = scenario
        self.stacks = stacks
        self.pins = pins
        self.control = control
        self.on_tick = on_tick
        self.runs = {mode: ModeRun(mode, pins.get(mode)) for mode in stacks}
        self.targets = {
            mode: Target(mode, _service_url(stack), timeout=scenario.client_timeout)
            for mode, stack in stacks.items()
        }
        self.cpu = CpuMeter()
        self.cpu_series: list[tuple[float, dict[int, float]]] = []
        self.start = 0.0

    async def timeline(self) -> None:
        """Apply each step at its time, to every stack at once."""
        for step in self.scenario.steps:
            await asyncio.sleep(max(0.0, self.start + step.at - time.monotonic()))
            await asyncio.gather(
                *(apply_step(self.control, stack, step) for stack in self.stacks.values())
            )

    async def _sample(self, mode: str, t: float, busy: dict[int, float]) -> None:
        in_flight = self.targets[mode].in_flight
        url = _service_url(self.stacks[mode]) + "/_admin/state"
        state = await _control(self.control, "GET", url)
        core = self.pins.get(mode)
        cpu = None if core is None else busy.get(core)
        self.runs[mode].samples.append(Sample(t, in_flight, state, cpu))

    async def sampler(self) -> None:
        """Sample every mode once a second, each sample its own task (a slow one skips none)."""
        pending: set[asyncio.Task[None]] = set()
        k = 1
        while True:
            await asyncio.sleep(max(0.0, self.start + k - time.monotonic()))
            t = time.monotonic() - self.start
            busy = self.cpu.read()
            self.cpu_series.append((t, busy))
            for mode in self.stacks:
                task = asyncio.create_task(self._sample(mode, t, busy))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if self.on_tick is not None:
                self.on_tick(t)
            k += 1

    async def run(self, t0: int, drain: float) -> float:
        """Load, timeline and sampler from wall-clock second ``t0``; return the generator's lag."""
        async with contextlib.AsyncExitStack() as exits:
            for target in self.targets.values():
                await exits.enter_async_context(target)
            await asyncio.sleep(max(0.0, t0 - time.time()))
            self.start = time.monotonic()
            sampling = asyncio.create_task(self.sampler())
            try:
                arrivals = schedule(self.scenario.mix, self.scenario.duration)
                targets = list(self.targets.values())
                lag, _ = await asyncio.gather(
                    run_open_loop(arrivals, targets, start=self.start), self.timeline()
                )
                end = self.start + self.scenario.duration
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                cancelled = await asyncio.gather(*(t.drain(drain) for t in targets))
            finally:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
        for (mode, target), n in zip(self.targets.items(), cancelled, strict=True):
            run = self.runs[mode]
            run.results = target.results
            run.peak_in_flight = target.peak_in_flight
            run.peaks = target.peaks
            run.cancelled = n
        return lag

    async def read_simulators(self, t0: int) -> None:
        """Each simulator's record, its arrivals shifted to seconds of the run."""
        for mode, stack in self.stacks.items():
            for name in DOWNSTREAMS:
                url = stack.simulators[name].url + "/_control"
                record = await _control(self.control, "GET", url)
                if record is not None:
                    record["by_second"] = [[s - t0, n] for s, n in record.get("by_second", [])]
                    load = record.get("load", {})
                    for key, rows in load.items():
                        if isinstance(rows, list):
                            load[key] = [[s - t0, v] for s, v in rows]
                    self.runs[mode].simulators[name] = record
            # The service's own work, reported as a simulator reports its load.
            own = await _control(self.control, "GET", _service_url(stack) + "/_admin/load")
            if own is not None and own.get("load", {}).get("capacity", {}).get("workers"):
                load = own["load"]
                for key, rows in load.items():
                    if isinstance(rows, list):
                        load[key] = [[s - t0, v] for s, v in rows]
                self.runs[mode].simulators[SERVICE_TARGET] = own


def _service_url(stack: Stack) -> str:
    assert stack.service is not None
    return stack.service.url


async def run_scenario(
    scenario: Scenario,
    stacks: Mapping[str, LoggedStack],
    pins: Mapping[str, int | None],
    *,
    settle: float = 5.0,
    drain: float = 10.0,
    on_tick: Callable[[float], None] | None = None,
) -> ScenarioRun:
    """Run ``scenario`` against every stack at once; return what was collected.

    Args:
        scenario: The timeline, load mix and duration.
        stacks: One running stack per mode.
        pins: The core of each mode (for its CPU samples), or ``None``.
        settle: At most this many seconds for the services to go quiet before the start.
        drain: After the last arrival, wait at most this long for answers; the
            rest are cancelled and recorded as ``unfinished``.
        on_tick: Called with the seconds elapsed, once a second.
    """
    async with httpx.AsyncClient() as control:
        await reset(control, stacks, settle)
        await asyncio.gather(
            *(
                apply_step(control, stack, Step(at=0.0, target=name, capacity=changes))
                for stack in stacks.values()
                for name, changes in scenario.capacity.items()
            )
        )
        runner = _Runner(scenario, stacks, pins, control, on_tick)
        # Start on a whole wall-clock second: the simulators count arrivals per second.
        t0 = math.ceil(time.time() + 0.2)
        lag = await runner.run(t0, drain)
        await runner.read_simulators(t0)
    return ScenarioRun(scenario, t0, lag, runner.runs, runner.cpu_series)
