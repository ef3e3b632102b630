"""Bulkhead against a small FIFO model, driven by hypothesis.

The model is the contract written plainly: a set of holders, a queue of
waiters, and "a freed permit goes to the first waiter, else back to the pool".
The real bulkhead runs real tasks on one event loop that the machine keeps for
the whole run. Rules spawn tasks, let holders leave, cancel tasks (holders or
waiters), take and give back permits directly, and give a permit back while
cancelling a waiter in the same loop iteration (the hand-off race). After every
rule the loop is settled, and the real holders, counts and queue must match the
model exactly.
"""

from __future__ import annotations

import asyncio
import collections

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from seawall.bulkhead import Bulkhead
from seawall.events import Listeners


class BulkheadMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.bh = Bulkhead("model", max_concurrent=1, listeners=Listeners())
        self.max = 1
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.gates: dict[int, asyncio.Event] = {}
        self.inside: set[int] = set()  # tasks really inside the protected block
        self.cancel_requested: set[int] = set()
        self.entered_after_cancel: set[int] = set()
        self.peak = 0
        # The model.
        self.holders: set[int] = set()
        self.queue: collections.deque[int] = collections.deque()
        self.external = 0  # permits the machine itself holds (acquire/release API)

    @initialize(max_concurrent=st.integers(1, 4))
    def build(self, max_concurrent: int) -> None:
        self.max = max_concurrent
        # max_wait is long enough never to expire during a run: expiry is tested
        # elsewhere, and here every wait must end by hand-off or cancellation.
        self.bh = Bulkhead(
            "model", max_concurrent=max_concurrent, max_wait=60.0, listeners=Listeners()
        )

    # -- driving the real thing ---------------------------------------------

    async def _worker(self, i: int) -> None:
        async with self.bh:
            if i in self.cancel_requested:
                self.entered_after_cancel.add(i)
            self.inside.add(i)
            self.peak = max(self.peak, len(self.inside))
            try:
                await self.gates[i].wait()
            finally:
                self.inside.discard(i)

    def _settle(self) -> None:
        async def settle() -> None:
            # Each hand-off takes one iteration; a chain of cancelled waiters
            # is at most as long as the number of tasks.
            for _ in range(len(self.tasks) + 6):
                await asyncio.sleep(0)

        self.loop.run_until_complete(settle())

    def _live(self) -> list[int]:
        return sorted(self.holders | set(self.queue))

    # -- the model -----------------------------------------------------------

    def _model_free_one(self) -> None:
        if self.queue:
            self.holders.add(self.queue.popleft())

    def _model_cancel(self, i: int) -> None:
        if i in self.queue:
            self.queue.remove(i)
        elif i in self.holders:
            self.holders.remove(i)
            self._model_free_one()

    def _model_full(self) -> bool:
        return len(self.holders) + self.external >= self.max

    # -- rules ---------------------------------------------------------------

    @rule()
    def spawn(self) -> None:
        i = len(self.tasks)
        self.gates[i] = asyncio.Event()
        self.tasks[i] = self.loop.create_task(self._worker(i))
        if self._model_full() or self.queue:
            self.queue.append(i)
        else:
            self.holders.add(i)
        self._settle()

    @precondition(lambda self: self.holders)
    @rule(pick=st.integers(0, 1000))
    def holder_leaves(self, pick: int) -> None:
        holders = sorted(self.holders)
        i = holders[pick % len(holders)]
        self.gates[i].set()
        self.holders.remove(i)
        self._model_free_one()
        self._settle()

    @precondition(lambda self: self.holders or self.queue)
    @rule(pick=st.integers(0, 1000))
    def cancel_task(self, pick: int) -> None:
        live = self._live()
        i = live[pick % len(live)]
        self.cancel_requested.add(i)
        self.tasks[i].cancel()
        self._model_cancel(i)
        self._settle()

    @rule()
    def try_acquire(self) -> None:
        expected = not self._model_full()
        assert self.bh.try_acquire() is expected
        if expected:
            assert not self.queue
            self.external += 1

    @precondition(lambda self: self.external)
    @rule()
    def release(self) -> None:
        self.bh.release()
        self.external -= 1
        self._model_free_one()
        self._settle()

    @precondition(lambda self: self.external and self.queue)
    @rule(pick=st.integers(0, 1000), cancel_first=st.booleans())
    def release_and_cancel_waiter_same_iteration(self, pick: int, cancel_first: bool) -> None:
        i = self.queue[pick % len(self.queue)]
        self.cancel_requested.add(i)
        # No await between the two: if `i` is first in line, the permit is
        # handed to it and it is cancelled before it can run.
        if cancel_first:
            self.tasks[i].cancel()
            self.bh.release()
        else:
            self.bh.release()
            self.tasks[i].cancel()
        self.external -= 1
        self._model_free_one()
        self._model_cancel(i)
        self._settle()

    # -- checks --------------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        assert self.inside == self.holders
        assert self.bh.in_use == len(self.holders) + self.external
        assert self.bh.in_use <= self.max
        assert self.bh.available == self.max - self.bh.in_use
        assert self.bh.waiting == len(self.queue)
        assert self.peak <= self.max
        assert not self.entered_after_cancel

    def teardown(self) -> None:
        try:
            for gate in self.gates.values():
                gate.set()
            for _ in range(self.external):
                self.bh.release()
            self.external = 0
            tasks = list(self.tasks.values())
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            assert self.bh.in_use == 0
            assert self.bh.waiting == 0
            assert not self.entered_after_cancel
        finally:
            self.loop.close()


BulkheadMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_bulkhead_model = BulkheadMachine.TestCase
