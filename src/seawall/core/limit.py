"""Adaptive concurrency limits: how many calls a dependency can take, measured.

A fixed bulkhead is a guess made once at configuration time; the right number
moves with the dependency's capacity. These algorithms move it from what each
call measured: its round-trip time, how many calls were in flight when it
started, and whether it was dropped (a timeout, a rejection by the
dependency). They follow Netflix's concurrency-limits ("Performance Under
Load", 2018), with its parameters and defaults where they make sense here:

* :class:`Gradient2` compares the latest RTT with a long, slowly drifting
  average (the RTT without load). While the latest is within ``tolerance``
  of it, the limit grows by ``queue_size`` per sample (smoothed); when the
  latency rises above it, the limit shrinks in proportion, at most by half
  per sample. When latency returns to normal after a long overload, the
  baseline is pulled down faster (5 % per sample while it is twice the
  latest), so the limit recovers without waiting for the average.
* :class:`Aimd` grows the limit by one per sample while the calls in flight
  use at least half of it, and multiplies it by ``backoff_ratio`` on a drop
  or an RTT over ``timeout``: TCP's additive increase, multiplicative decrease.

Neither grows the limit while the caller uses less than half of it: an idle
client learns nothing about the dependency's capacity.

The algorithms learn from windows of calls, not from each call:
:class:`SampleWindow` gathers the calls of about a second (at least
``min_samples`` of them) and hands the algorithm their average RTT, the most
calls in flight during the window and whether any was dropped, as
concurrency-limits' ``WindowedLimit`` does. One noisy call moves nothing, and
a call costs a few additions rather than an algorithm step.

This module is sans-IO: no clock, no lock, no await. ``on_sample`` takes the
measured RTT in seconds and :meth:`SampleWindow.add` the time it ended; the
driver that admits calls (and holds a lock around them) reads its injected
clock.

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from seawall import _validate

__all__ = [
    "Aimd",
    "AimdConfig",
    "ExpAverage",
    "Gradient2",
    "Gradient2Config",
    "LimitAlgorithm",
    "SampleWindow",
    "SampleWindowConfig",
]


@runtime_checkable
class LimitAlgorithm(Protocol):
    """What a concurrency-limit driver asks of an algorithm."""

    @property
    def limit(self) -> int:
        """The number of calls allowed in flight now (at least 1)."""
        ...

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        """Learn from one finished call; return the new limit.

        Args:
            rtt: The call's round-trip time, in seconds (>= 0).
            in_flight: Calls in flight when it started, itself included.
            dropped: Whether it failed in a way that says "too much load":
                a timeout, or a rejection by the dependency (429, 503).
        """
        ...


class ExpAverage:
    """An exponential moving average over about ``window`` samples.

    The first ``warmup`` samples are averaged plainly, so that the first one
    alone does not set the baseline (concurrency-limits' ``ExpAvgMeasurement``).
    """

    __slots__ = ("_count", "_factor", "_sum", "_warmup", "value")

    def __init__(self, window: int, warmup: int = 10) -> None:
        self._factor = 2.0 / (window + 1)
        self._warmup = warmup
        self._count = 0
        self._sum = 0.0
        #: The current average (0.0 before the first sample).
        self.value = 0.0

    def add(self, sample: float) -> float:
        """Add one sample; return the new average."""
        if self._count < self._warmup:
            self._count += 1
            self._sum += sample
            self.value = self._sum / self._count
        else:
            self.value += (sample - self.value) * self._factor
        return self.value


def _limits_errors(initial: object, low: object, high: object) -> list[str]:
    errors = [
        *_validate.at_least("initial", initial, 1),
        *_validate.at_least("min", low, 1),
        *_validate.at_least("max", high, 1),
    ]
    if not errors and not low <= initial <= high:  # type: ignore[operator]
        errors.append(f"initial ({initial}) must be within [min, max] = [{low}, {high}]")
    return errors


@dataclass(frozen=True, slots=True, kw_only=True)
class Gradient2Config:
    """The parameters of :class:`Gradient2` (validated at construction).

    Attributes:
        initial: The limit to start from.
        min: The limit never goes below this (>= 1).
        max: ...nor above this.
        smoothing: How much of each sample's verdict moves the limit (0 to 1];
            0.2 moves it a fifth of the way.
        tolerance: How much slower than the baseline a call may be before the
            limit shrinks (>= 1; 1.5: half as slow again).
        long_window: About how many samples the baseline RTT averages over (its
            drift); concurrency-limits' default is 600.
        queue_size: How many calls the limit grows by per sample while the
            latency is within tolerance: the queue it allows the dependency.
        probe_interval: Every this many samples (0: never), the limit drops to
            ``max(min, queue_size)`` until a window holds only calls admitted
            under it; that window's RTT, measured without a queue, restarts
            the baseline, and the limit returns to where it was. The first
            probe follows the baseline's warm-up. Without it the baseline is
            only ever measured at the limit's own load: a limit that starts
            above the capacity learns the queued RTT as normal and stays
            there, and the queue that ``tolerance`` and ``queue_size`` allow
            drifts into the baseline until the limit reaches ``max``.
    """

    initial: int = 20
    min: int = 1
    max: int = 200
    smoothing: float = 0.2
    tolerance: float = 1.5
    long_window: int = 600
    queue_size: int = 4
    probe_interval: int = 60

    def __post_init__(self) -> None:
        errors = _limits_errors(self.initial, self.min, self.max)
        errors += _validate.in_range("smoothing", self.smoothing, 0, 1, low_open=True)
        if not _validate.is_number(self.tolerance) or not 1 <= self.tolerance < math.inf:
            errors.append(f"tolerance must be a finite number >= 1, got {self.tolerance!r}")
        errors += _validate.at_least("long_window", self.long_window, 1)
        errors += _validate.at_least("queue_size", self.queue_size, 0)
        errors += _validate.at_least("probe_interval", self.probe_interval, 0)
        _validate.fail_if(errors)


class Gradient2:
    """The Gradient2 limit: grow while latency holds, shrink as it rises.

    Args:
        config: Its parameters (default: concurrency-limits' defaults, but a
            minimum of 1 rather than 20, so that it can protect a small
            dependency).
    """

    __slots__ = ("_countdown", "_estimate", "_saved", "config", "last_rtt", "long_rtt")

    def __init__(self, config: Gradient2Config | None = None) -> None:
        self.config = config or Gradient2Config()
        self._estimate = float(self.config.initial)
        #: The baseline: the long average of RTTs, in seconds.
        self.long_rtt = ExpAverage(self.config.long_window)
        #: The latest sample's RTT, in seconds (0.0 before any).
        self.last_rtt = 0.0
        self._countdown = min(10, self.config.probe_interval)  # the first probe: after the warm-up
        self._saved: float | None = None  # the limit to return to, while probing

    @property
    def limit(self) -> int:
        """The calls allowed in flight now."""
        return int(self._estimate)

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:  # noqa: ARG002 - latency says it
        """Learn from one finished call (see :class:`LimitAlgorithm`); return the new limit."""
        config = self.config
        short = max(rtt, 1e-9)  # a zero RTT (a coarse clock) must not divide by zero
        self.last_rtt = rtt
        saved = self._saved
        if saved is not None:  # probing: held low until a window holds only calls admitted under it
            if in_flight > self._estimate:
                return int(self._estimate)  # calls admitted under the old limit are still draining
            self._saved = None
            self.long_rtt = ExpAverage(config.long_window, warmup=1)  # restart from the no-load RTT
            self._estimate = saved
        elif config.probe_interval:
            self._countdown -= 1
            if self._countdown <= 0:
                self._countdown = config.probe_interval
                self._saved = self._estimate
                self._estimate = min(self._estimate, float(max(config.min, config.queue_size)))
                return int(self._estimate)
        long = self.long_rtt.add(short)
        if long / short > 2:  # noqa: PLR2004 - back from a long overload: drift down faster
            self.long_rtt.value *= 0.95
        estimate = self._estimate
        if in_flight < estimate / 2:
            return int(estimate)  # the caller is not using the limit: nothing learnt
        gradient = max(0.5, min(1.0, config.tolerance * long / short))
        target = estimate * gradient + config.queue_size
        estimate = estimate * (1 - config.smoothing) + target * config.smoothing
        self._estimate = max(float(config.min), min(float(config.max), estimate))
        return int(self._estimate)

    def __repr__(self) -> str:
        return f"Gradient2(limit={self.limit}, long_rtt={self.long_rtt.value:.4g}s)"


@dataclass(frozen=True, slots=True, kw_only=True)
class AimdConfig:
    """The parameters of :class:`Aimd` (validated at construction).

    Attributes:
        initial: The limit to start from.
        min: The limit never goes below this (>= 1).
        max: ...nor above this.
        backoff_ratio: What a drop multiplies the limit by, in [0.5, 1).
        timeout: An RTT longer than this, in seconds, counts as a drop (> 0).
    """

    initial: int = 20
    min: int = 1
    max: int = 200
    backoff_ratio: float = 0.9
    timeout: float = 5.0

    def __post_init__(self) -> None:
        errors = _limits_errors(self.initial, self.min, self.max)
        ratio = self.backoff_ratio
        if not _validate.is_number(ratio) or not 0.5 <= ratio < 1:  # noqa: PLR2004
            errors.append(f"backoff_ratio must be in [0.5, 1), got {ratio!r}")
        errors += _validate.duration("timeout", self.timeout, allow_zero=False)
        _validate.fail_if(errors)


class Aimd:
    """Additive increase, multiplicative decrease.

    Args:
        config: Its parameters (default: concurrency-limits' defaults, but a
            minimum of 1 rather than 20).
    """

    __slots__ = ("_limit", "config")

    def __init__(self, config: AimdConfig | None = None) -> None:
        self.config = config or AimdConfig()
        self._limit = self.config.initial

    @property
    def limit(self) -> int:
        """The calls allowed in flight now."""
        return self._limit

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        """Learn from one finished call (see :class:`LimitAlgorithm`); return the new limit."""
        config = self.config
        limit = self._limit
        if dropped or rtt > config.timeout:
            limit = int(limit * config.backoff_ratio)
        elif in_flight * 2 >= limit:
            limit += 1
        self._limit = max(config.min, min(config.max, limit))
        return self._limit

    def __repr__(self) -> str:
        return f"Aimd(limit={self._limit})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleWindowConfig:
    """How calls are gathered into one sample of the limit algorithm.

    Attributes:
        min_time: A window lasts at least this long, in seconds (> 0)...
        max_time: ...and at most this long once it has ``min_samples``
            (>= ``min_time``). Between the two it lasts twice the fastest
            call's RTT, so a slow dependency is judged on whole calls.
        min_samples: A window closes only once it holds this many calls (>= 1).
        min_rtt: Calls faster than this, in seconds, are not counted: a cache
            hit or an error raised before the wire says nothing of the load.
    """

    min_time: float = 1.0
    max_time: float = 1.0
    min_samples: int = 10
    min_rtt: float = 0.0001

    def __post_init__(self) -> None:
        errors = _validate.duration("min_time", self.min_time, allow_zero=False)
        errors += _validate.duration("max_time", self.max_time, allow_zero=False)
        if not errors and self.max_time < self.min_time:
            errors.append(f"max_time ({self.max_time}) must be >= min_time ({self.min_time})")
        errors += _validate.at_least("min_samples", self.min_samples, 1)
        errors += _validate.duration("min_rtt", self.min_rtt)
        _validate.fail_if(errors)


class SampleWindow:
    """Calls gathered into windows, each of them one sample of ``algorithm``.

    Not thread-safe by itself: its owner holds a lock around :meth:`add`.
    """

    __slots__ = (
        "_backoff",
        "_count",
        "_dropped",
        "_ends",
        "_fastest",
        "_last",
        "_max_in_flight",
        "_sum",
        "algorithm",
        "config",
    )

    def __init__(self, algorithm: LimitAlgorithm, config: SampleWindowConfig | None = None) -> None:
        self.algorithm = algorithm
        self.config = config or SampleWindowConfig()
        self._ends: float | None = None
        self._backoff = -math.inf  # when the last window with a drop closed
        self._last = 0.0  # the last window's average RTT
        self._clear()

    def _clear(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._fastest = math.inf
        self._max_in_flight = 0
        self._dropped = False

    def add(
        self, now: float, rtt: float | None, in_flight: int, dropped: bool
    ) -> tuple[int, int] | None:
        """Count one finished call; at the end of a window, feed the algorithm.

        Args:
            now: When the call ended (the driver's clock).
            rtt: How long it took, in seconds; ``None`` for a dropped call that
                was not timed (a driver that times a share of its calls): the
                drop counts, its RTT does not.
            in_flight: Calls in flight when it ended, itself included.
            dropped: Whether it timed out or the dependency refused it.

        Returns:
            ``(old, new)`` limits when this call closed a window, else ``None``.
        """
        config = self.config
        if rtt is None:
            if not dropped:
                return None
        elif rtt < config.min_rtt and not dropped:
            return None
        else:
            self._count += 1
            self._sum += rtt
            self._fastest = min(self._fastest, rtt)
        self._max_in_flight = max(self._max_in_flight, in_flight)
        if dropped:
            self._dropped = True
        ends = self._ends
        if ends is None:  # the first window opened when its first call started
            ends = self._ends = now - (rtt or 0.0) + config.min_time
        # A drop closes the window at once: waiting a second to back off
        # would let a whole second of calls pile onto an overloaded dependency.
        # ...if its call was sent since the last backoff: one sent before was
        # sent under the old limit, which that backoff answered. It still
        # counts, once, at the end of this window (TCP: once per flight). An
        # untimed drop may be either: it waits for the window's end.
        fresh = dropped and rtt is not None and rtt <= now - self._backoff
        if not fresh and (now < ends or self._count < config.min_samples):
            return None
        old = self.algorithm.limit
        # A window of untimed drops alone: the last window's RTT stands for it.
        average = self._sum / self._count if self._count else self._last
        self._last = average
        new = self.algorithm.on_sample(average, self._max_in_flight, self._dropped)
        fastest = self._fastest if self._count else average
        span = min(max(2 * fastest, config.min_time), config.max_time)
        self._ends = now + span
        if self._dropped:
            self._backoff = now
        self._clear()
        return old, new
