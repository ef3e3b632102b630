"""Fault injection: make a call slow, failing, hung or cut off, on purpose.

A :class:`Fault` says what should go wrong and how often; :class:`Chaos`
holds the current fault (changeable at run time, from any thread) and draws a
:class:`Decision` for each call. The decision is plain data, so the same fault
logic drives:

* in-process calls -- :meth:`Chaos.call_async` / :meth:`Chaos.call` sleep,
  raise or hang around a function, for tests;
* the HTTP simulators of the reference service, which turn a decision into a
  delayed response, a 429/503 with ``Retry-After``, a hang, a dropped
  connection, or a request that is committed and then loses its response.

Randomness is injectable (``random=``), so a scenario replays exactly.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import enum
import random as _random
import threading
import time
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from seawall import _validate
from seawall.core.backoff import parse_retry_after
from seawall.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

__all__ = ["Action", "Chaos", "Decision", "Fault", "InjectedFault"]

P = ParamSpec("P")
R = TypeVar("R")


class Action(enum.Enum):
    """What a call should do, after its delay."""

    PASS = "pass"  # noqa: S105 - an action, not a password
    """Run normally."""
    FAIL = "fail"
    """Answer with an error status (or raise, in process)."""
    HANG = "hang"
    """Never answer (until the caller gives up)."""
    DROP = "drop"
    """Close the connection without answering (nothing was done)."""
    LOSE_RESPONSE = "lose_response"
    """Do the work (commit), then close the connection before answering."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """What goes wrong, and how often. The default is "nothing".

    Each call first waits ``latency`` seconds (plus up to ``jitter`` more, drawn
    uniformly); then, with the given probabilities, hangs, drops the
    connection, loses its response, or fails with ``status``.

    Attributes:
        latency: Added delay, in seconds (>= 0).
        jitter: Extra delay drawn uniformly from [0, jitter] seconds (>= 0).
        error_rate: Probability of answering with ``status`` (0 to 1).
        status: The error status: 500, 503, 429, 400 ... (100-599).
        retry_after: Seconds to send in ``Retry-After`` with a failure, or
            ``None`` for none.
        retry_after_as_date: Send ``Retry-After`` as an HTTP date instead of seconds.
        hang_rate: Probability of never answering.
        drop_rate: Probability of closing the connection without doing anything.
        lose_response_rate: Probability of doing the work, then closing the
            connection before the response (the "did my payment go through?" case).
    """

    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    status: int = 503
    retry_after: float | None = None
    retry_after_as_date: bool = False
    hang_rate: float = 0.0
    drop_rate: float = 0.0
    lose_response_rate: float = 0.0

    def __post_init__(self) -> None:
        errors = [
            *_validate.duration("latency", self.latency),
            *_validate.duration("jitter", self.jitter),
        ]
        for name in ("error_rate", "hang_rate", "drop_rate", "lose_response_rate"):
            errors += _validate.in_range(name, getattr(self, name), 0, 1)
        status: object = self.status
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:  # noqa: PLR2004
            errors.append(f"status must be an HTTP status (100-599), got {status!r}")
        if self.retry_after is not None:
            errors += _validate.duration("retry_after", self.retry_after)
        total = self.error_rate + self.hang_rate + self.drop_rate + self.lose_response_rate
        if not errors and total > 1:
            errors.append(f"the rates add up to more than 1 ({total:.3g})")
        _validate.fail_if(errors)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from a JSON-like mapping (the simulators' control API).

        Raises:
            ConfigError: An unknown key or a bad value; the message names it.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            _validate.fail_if([f"unknown fault field(s) {unknown}; known: {sorted(known)}"])
        try:
            return cls(**dict(data))
        except TypeError as exc:  # a non-number compared in validation
            raise _validate_error(str(exc)) from None

    def to_mapping(self) -> dict[str, Any]:
        """Return the fault as a JSON-able mapping (the inverse of :meth:`from_mapping`)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Decision:
    """What one call should do: wait ``delay`` seconds, then ``action``.

    For ``Action.FAIL``, ``status`` and ``headers`` (``Retry-After``) say how.
    """

    delay: float
    action: Action
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class InjectedFault(Exception):  # noqa: N818 - it is a fault, on purpose
    """Raised in process for ``Action.FAIL``; carries ``status_code`` and ``retry_after``.

    ``retry_after`` is the decision's ``Retry-After`` read back in seconds,
    as the retry reads any ``Retry-After`` (so an HTTP date counts too), or
    ``None``. :func:`seawall.transient` classifies it by its status like any
    HTTP error.
    """

    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"injected fault: HTTP {status_code}")
        self.status_code = status_code
        self.retry_after = retry_after


class Chaos:
    """The current :class:`Fault` of one target, and the decisions drawn from it.

    Thread-safe: the fault can be replaced (:meth:`set`) while calls draw
    decisions. Counters say what was decided.

    Args:
        fault: The initial fault (default: none).
        random: A source of floats in [0, 1); default :func:`random.random`.
            Seed one for a scenario that replays exactly.
    """

    __slots__ = ("_counts", "_fault", "_lock", "_random")

    def __init__(
        self, fault: Fault | None = None, *, random: Callable[[], float] | None = None
    ) -> None:
        self._fault = fault or Fault()
        self._random = random or _random.random
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(Action, 0)

    @property
    def fault(self) -> Fault:
        """The fault in force."""
        return self._fault

    def set(self, fault: Fault | None = None, **changes: Any) -> Fault:
        """Replace the fault (``None``: no fault), or change some of its fields.

        Returns:
            The fault now in force.
        """
        with self._lock:
            base = Fault() if fault is None and not changes else fault or self._fault
            self._fault = replace(base, **changes) if changes else base
            return self._fault

    def clear(self) -> None:
        """Remove the fault: calls pass untouched."""
        self.set(Fault())

    @property
    def counts(self) -> dict[Action, int]:
        """How many decisions of each action were drawn."""
        with self._lock:
            return dict(self._counts)

    def decide(self) -> Decision:
        """Draw what the next call should do."""
        fault = self._fault
        rand = self._random
        delay = fault.latency + (fault.jitter * rand() if fault.jitter else 0.0)
        roll = rand()
        action = Action.PASS
        for rate, chosen in (
            (fault.hang_rate, Action.HANG),
            (fault.drop_rate, Action.DROP),
            (fault.lose_response_rate, Action.LOSE_RESPONSE),
            (fault.error_rate, Action.FAIL),
        ):
            if roll < rate:
                action = chosen
                break
            roll -= rate
        with self._lock:
            self._counts[action] += 1
        if action is not Action.FAIL:
            return Decision(delay, action)
        headers = {}
        if fault.retry_after is not None:
            if fault.retry_after_as_date:
                headers["Retry-After"] = formatdate(time.time() + fault.retry_after, usegmt=True)
            else:
                headers["Retry-After"] = str(round(fault.retry_after))
        return Decision(delay, action, fault.status, headers)

    # -- in process ------------------------------------------------------------

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` with the fault applied.

        FAIL raises :class:`InjectedFault`; HANG waits until cancelled; DROP
        raises :class:`ConnectionResetError` before the call; LOSE_RESPONSE
        runs the call, then raises :class:`ConnectionResetError`.
        """
        decision = self.decide()
        if decision.delay:
            await asyncio.sleep(decision.delay)
        action = decision.action
        if action is Action.HANG:
            await asyncio.Event().wait()
        if action is Action.FAIL:
            raise _injected(decision)
        if action is Action.DROP:
            msg = "injected fault: connection dropped"
            raise ConnectionResetError(msg)
        result = await fn(*args, **kwargs)
        if action is Action.LOSE_RESPONSE:
            msg = "injected fault: response lost after the call"
            raise ConnectionResetError(msg)
        return result

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` with the fault applied (see :meth:`call_async`).

        HANG blocks the thread for an hour: use it only where the caller has a
        way out (a thread it can abandon).
        """
        decision = self.decide()
        if decision.delay:
            time.sleep(decision.delay)
        action = decision.action
        if action is Action.HANG:
            time.sleep(3600)
        if action is Action.FAIL:
            raise _injected(decision)
        if action is Action.DROP:
            msg = "injected fault: connection dropped"
            raise ConnectionResetError(msg)
        result = fn(*args, **kwargs)
        if action is Action.LOSE_RESPONSE:
            msg = "injected fault: response lost after the call"
            raise ConnectionResetError(msg)
        return result

    def __repr__(self) -> str:
        return f"Chaos({self._fault!r})"


def _injected(decision: Decision) -> InjectedFault:
    # Read back from the header, as a client would: an HTTP date (whole
    # seconds) gives up to a second less than the fault asked for.
    return InjectedFault(decision.status, parse_retry_after(decision.headers.get("Retry-After")))


def _validate_error(message: str) -> Exception:
    return ConfigError(message)
