"""Client-side adaptive throttling: shed the share of calls the backend is refusing.

The Google SRE book ("Handling Overload") has each client keep, over a
trailing window, how many calls it *requested* (its own rejections included)
and how many the backend *accepted*, and reject a new call locally with
probability::

    p = max(0, (requests - k * accepts) / (requests + 1))

While the backend accepts everything, ``requests <= k * accepts`` and nothing
is shed. When it refuses most calls, ``p`` rises towards 1 and the client
stops sending what would be refused anyway, but always lets a trickle
through, so it sees the backend recover: a softer, proportional cousin of a
circuit breaker. ``k`` is how much more than the backend accepts the client
may send: 2 lets twice the accepted load reach it (the book's default), 1.1
sheds more aggressively.

This module is sans-IO: the driver passes the clock's reading and a random
draw, and holds a lock around each call.

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seawall import _validate

__all__ = ["ThrottleConfig", "ThrottleState"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleConfig:
    """The parameters of client-side throttling (validated at construction).

    Attributes:
        k: The accepts multiplier (>= 1): the client may send ``k`` times what
            the backend accepted before it sheds.
        window: The trailing window, in seconds (> 0); the SRE book uses two
            minutes. A short window forgets an outage sooner, so the client
            recovers sooner, at the cost of a noisier probability.
        buckets: How many slices the window is kept in (>= 1): its time
            resolution is ``window / buckets``.
        max_probability: The most that is ever shed, in [0, 1): some calls
            always go through, so that recovery is seen.
        min_requests: Nothing is shed while the window holds fewer requests
            than this (>= 0). The formula is meant for many requests: after a
            single refusal it would shed half of the next calls, a retry
            included. (Envoy's admission control has the same floor, as a rate.)
    """

    k: float = 2.0
    window: float = 120.0
    buckets: int = 60
    max_probability: float = 0.95
    min_requests: int = 10

    def __post_init__(self) -> None:
        errors = []
        if not _validate.is_number(self.k) or not 1 <= self.k < math.inf:
            errors.append(f"k must be a finite number >= 1, got {self.k!r}")
        errors += _validate.duration("window", self.window, allow_zero=False)
        errors += _validate.at_least("buckets", self.buckets, 1)
        p = self.max_probability
        if not _validate.is_number(p) or not 0 <= p < 1:
            errors.append(f"max_probability must be in [0, 1), got {p!r}")
        errors += _validate.at_least("min_requests", self.min_requests, 0)
        _validate.fail_if(errors)


class ThrottleState:
    """Requests and accepts over a trailing window, and the rejection probability.

    Args:
        config: Its parameters.
    """

    __slots__ = ("_accepts", "_epoch", "_requests", "_width", "accepts", "config", "requests")

    def __init__(self, config: ThrottleConfig | None = None) -> None:
        self.config = config or ThrottleConfig()
        n = self.config.buckets
        self._width = self.config.window / n
        self._requests = [0] * n
        self._accepts = [0] * n
        self._epoch: int | None = None
        #: Requests in the window (locally rejected ones included).
        self.requests = 0
        #: Requests the backend accepted in the window.
        self.accepts = 0

    def _advance(self, now: float) -> int:
        """Move the window to ``now``, clearing the slices it left; return the current slice."""
        epoch = math.floor(now / self._width)
        last = self._epoch
        n = self.config.buckets
        if last is None:
            self._epoch = epoch
        elif epoch > last:
            # At most n slices to clear, however long the client was idle.
            for e in range(last + 1, min(epoch, last + n) + 1):
                i = e % n
                self.requests -= self._requests[i]
                self.accepts -= self._accepts[i]
                self._requests[i] = 0
                self._accepts[i] = 0
            self._epoch = epoch
        return (self._epoch or 0) % n

    def probability(self, now: float) -> float:
        """Return the rejection probability at ``now``."""
        self._advance(now)
        return self._p()

    def _p(self) -> float:
        requests = self.requests
        if requests < self.config.min_requests:
            return 0.0
        p = (requests - self.config.k * self.accepts) / (requests + 1)
        if p <= 0.0:
            return 0.0
        return min(p, self.config.max_probability)

    def admit(self, now: float, draw: float) -> float:
        """Decide a request; a shed one is counted as a request at once.

        A request that goes is counted when its outcome is known
        (:meth:`accepted` or :meth:`refused`): a burst of calls still in
        flight is not a burst of refusals.

        Args:
            now: The clock's reading.
            draw: A uniform random number in [0, 1).

        Returns:
            0.0 when the request may go; else the probability it was shed with.
        """
        i = self._advance(now)
        p = self._p()
        if draw < p:
            self._requests[i] += 1
            self.requests += 1
            return p
        return 0.0

    def accepted(self, now: float, n: int = 1) -> None:
        """Count ``n`` requests the backend accepted (answered with no refusal)."""
        i = self._advance(now)
        self._requests[i] += n
        self._accepts[i] += n
        self.requests += n
        self.accepts += n

    def shedding(self) -> bool:
        """Whether a request decided now could be shed (the window as last advanced)."""
        return self._p() > 0.0

    def refused(self, now: float) -> None:
        """Count a request the backend refused (or that timed out)."""
        i = self._advance(now)
        self._requests[i] += 1
        self.requests += 1

    def reset(self) -> None:
        """Forget the window."""
        n = self.config.buckets
        self._requests = [0] * n
        self._accepts = [0] * n
        self._epoch = None
        self.requests = 0
        self.accepts = 0
