"""The breaker against a small reference model, driven by hypothesis.

The model is the contract written as plainly as possible: a list of the last
`size` outcomes, a state, the probes in flight. The real breaker is driven
through its `with` statement, each call in its own context (as concurrent tasks
would be), so the lock-free fast paths are exercised too. After every step the
two must agree on the state and on the window's counts.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from seawall import CircuitBreaker, CircuitOpenError, CountWindow, State
from seawall.events import Listeners
from seawall.testing import FakeClock


class Boom(Exception):
    pass


class Ignored(Exception):
    pass


@dataclass
class ModelCall:
    gen: int
    started: float
    probe: bool
    probe_id: int = 0


@dataclass
class Model:
    size: int
    min_calls: int
    fail_thr: float
    slow_thr: float
    slow_dur: float
    open_dur: float
    probes: int
    max_wait: float
    state: State = State.CLOSED
    gen: int = 0
    window: list[tuple[bool, bool]] = field(default_factory=list)  # (failed, slow)
    open_until: float = 0.0
    # Each probe in flight and when it was admitted: a probe is timed from
    # its own admission, not from when the circuit went HALF_OPEN.
    probes_started: dict[int, float] = field(default_factory=dict)
    probe_seq: int = 0
    admitted: int = 0
    succeeded: int = 0

    def move(self, new: State, now: float) -> None:
        self.state = new
        self.gen += 1
        self.probes_started.clear()
        if new is State.OPEN:
            self.open_until = now + self.open_dur
        elif new is State.HALF_OPEN:
            self.admitted = self.succeeded = 0
        elif new is State.CLOSED:
            self.window = []

    def advance(self, now: float) -> None:
        if self.state is State.OPEN and now >= self.open_until:
            self.move(State.HALF_OPEN, now)
        elif (
            self.state is State.HALF_OPEN
            and self.probes_started
            and now - min(self.probes_started.values()) >= self.max_wait
        ):
            self.move(State.OPEN, now)

    def acquire(self, now: float) -> ModelCall | None:
        if self.state in (State.CLOSED, State.DISABLED):
            return ModelCall(self.gen if self.state is State.CLOSED else -1, now, probe=False)
        self.advance(now)
        if self.state is State.HALF_OPEN and self.admitted < self.probes:
            self.admitted += 1
            self.probe_seq += 1
            self.probes_started[self.probe_seq] = now
            return ModelCall(self.gen, now, probe=True, probe_id=self.probe_seq)
        return None

    def finish(self, call: ModelCall, kind: str, now: float) -> None:
        if call.gen != self.gen:
            return
        self.probes_started.pop(call.probe_id, None)
        if kind == "ignored":
            if self.state is State.HALF_OPEN:
                self.admitted -= 1
            return
        failed = kind == "failure"
        slow = self.slow_thr < 1.0 and now - call.started > self.slow_dur
        if self.state is State.CLOSED:
            self.window = [*self.window, (failed, slow)][-self.size :]
            calls = len(self.window)
            if calls >= min(self.min_calls, self.size):
                fails = sum(f for f, _ in self.window)
                slows = sum(s for _, s in self.window)
                if fails / calls >= self.fail_thr or (
                    self.slow_thr < 1.0 and slows / calls >= self.slow_thr
                ):
                    self.move(State.OPEN, now)
        elif self.state is State.HALF_OPEN:
            if failed or slow:
                self.move(State.OPEN, now)
            else:
                self.succeeded += 1
                if self.succeeded >= self.probes:
                    self.move(State.CLOSED, now)


@dataclass
class RealCall:
    model: ModelCall
    context: contextvars.Context


class BreakerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    @initialize(
        size=st.integers(1, 12),
        min_calls=st.integers(1, 15),
        fail_thr=st.sampled_from([0.2, 0.5, 0.75, 1.0]),
        slow_thr=st.sampled_from([0.3, 0.6, 1.0]),
        probes=st.integers(1, 3),
        max_wait=st.sampled_from([2.0, 5.0, 50.0]),
    )
    def setup(
        self,
        size: int,
        min_calls: int,
        fail_thr: float,
        slow_thr: float,
        probes: int,
        max_wait: float,
    ) -> None:
        self.clock = FakeClock()
        self.breaker = CircuitBreaker(
            "model",
            window=CountWindow(size),
            minimum_calls=min_calls,
            failure_rate_threshold=fail_thr,
            slow_call_rate_threshold=slow_thr,
            slow_call_duration=1.0,
            open_duration=5.0,
            half_open_calls=probes,
            half_open_max_wait=max_wait,
            ignore=Ignored,
            clock=self.clock,
            listeners=Listeners(),
        )
        self.model = Model(size, min_calls, fail_thr, slow_thr, 1.0, 5.0, probes, max_wait)

    @rule(target=calls)
    def start(self) -> RealCall | None:
        now = self.clock.monotonic()
        expected = self.model.acquire(now)
        context = contextvars.copy_context()
        try:
            context.run(self.breaker.__enter__)
        except CircuitOpenError:
            assert expected is None, "breaker rejected a call the model admits"
            return None
        assert expected is not None, "breaker admitted a call the model rejects"
        return RealCall(expected, context)

    @rule(call=consumes(calls), kind=st.sampled_from(["success", "failure", "ignored"]))
    def finish(self, call: RealCall | None, kind: str) -> None:
        if call is None:
            return
        exc = {"success": None, "failure": Boom(), "ignored": Ignored()}[kind]
        call.context.run(self.breaker.__exit__, type(exc) if exc else None, exc, None)
        self.model.finish(call.model, kind, self.clock.monotonic())

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.5, 2.0, 5.0, 7.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "disable", "reset"]))
    def operator(self, action: str) -> None:
        getattr(self.breaker, action)()
        new = {"force_open": State.FORCED_OPEN, "disable": State.DISABLED, "reset": State.CLOSED}
        if self.model.state is not new[action] or action == "reset":
            self.model.move(new[action], self.clock.monotonic())

    @invariant()
    def agree(self) -> None:
        if not hasattr(self, "breaker"):
            return
        self.model.advance(self.clock.monotonic())
        assert self.breaker.state is self.model.state
        m = self.breaker.metrics
        if self.model.state is State.CLOSED:
            window = self.model.window
            assert m.calls == len(window)
            assert m.failures == sum(f for f, _ in window)
            assert m.slow_calls == sum(s for _, s in window)


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBreakerModel = BreakerMachine.TestCase
