"""The header that carries a request's remaining deadline from one service to the next.

A deadline set with :func:`seawall.deadline` lives in the process that set it.
To travel, it is written into :data:`DEADLINE_HEADER` by the HTTP client
(:mod:`seawall.integrations.httpx`) and read back by the server
(:mod:`seawall.integrations.asgi`), which starts its own deadline from it::

    Seawall-Deadline-Ms: 1834

The value is the number of **milliseconds left** when the request was sent: an
integer, rounded down so it never promises more time than there is. It is
relative, not a point in time, because clocks differ between hosts and a
monotonic clock means nothing outside its process. Transit time is not
subtracted: the receiver cannot know it, and a few milliseconds early is the
safe side.

Both ends use the two helpers here, so the format is defined once. Neither
helper ever raises: a header is input from another system, and a bad one must
not fail the request it came with.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math

__all__ = ["DEADLINE_HEADER", "MAX_DEADLINE", "format_deadline", "parse_deadline"]

#: The header's name. HTTP header names are case-insensitive; send it as written.
DEADLINE_HEADER = "Seawall-Deadline-Ms"

#: The longest budget the header carries, in seconds (a day): longer values are
#: clipped to it, on both ends. Nobody waits a day for a response; it only keeps
#: the arithmetic on monotonic clocks sane.
MAX_DEADLINE = 86_400.0

# Longer than any value within MAX_DEADLINE (8 digits, a point, 3 decimals):
# text this long is garbage and is not parsed further.
_MAX_LENGTH = 16


def format_deadline(seconds: float) -> str:
    """Return the header value for ``seconds`` left: whole milliseconds, rounded down.

    Negative and NaN values give ``"0"`` (the deadline has passed); values
    above :data:`MAX_DEADLINE` (infinity included) are clipped to it.
    """
    if not seconds > 0:  # also NaN
        return "0"
    return str(math.floor(min(seconds, MAX_DEADLINE) * 1000))


def parse_deadline(value: object) -> float | None:
    """Return the seconds left that a header value carries, or ``None`` if it is unusable.

    Accepts ``str`` or ``bytes`` holding non-negative milliseconds (leniently
    with a fractional part: ``"1500.5"``), surrounding whitespace allowed.
    Values above :data:`MAX_DEADLINE` are clipped to it; ``"0"`` means the
    deadline has passed. Anything else -- empty, negative, signed, non-ASCII
    digits, exponents, ``"inf"``, overlong text, other types -- gives ``None``.
    Never raises.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_LENGTH or not text.isascii():
        return None
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or text.endswith("."):
        return None
    return min(float(text) / 1000, MAX_DEADLINE)
