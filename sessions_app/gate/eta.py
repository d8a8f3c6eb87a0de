"""Wait estimates from the observed rate at which seats free up.

A person at place p waits for p departures from the active set. The rate comes from the most
recent departures (Redis keeps the last 50 times); until there are enough of them, we assume
each of the `max_active` seats turns over once per ASSUMED_SESSION_SECONDS. Pure functions:
callers pass what they read, so the estimate is easy to test and costs nothing per person.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Departures older than this say little about the present rate.
RATE_WINDOW_SECONDS = 3600
MIN_DEPARTURES_FOR_RATE = 3


def departure_rate(
    departures: Sequence[float], *, now: float, max_active: int, assumed_session_seconds: float
) -> float:
    """Seats freed per second."""
    recent = sorted(t for t in departures if now - t <= RATE_WINDOW_SECONDS)
    if len(recent) >= MIN_DEPARTURES_FOR_RATE:
        # Measure up to now, not to the last departure, so a stall lowers the rate.
        span = max(now - recent[0], 1.0)
        return len(recent) / span
    return max(max_active, 1) / max(assumed_session_seconds, 1.0)


def eta_seconds(position: int, rate_per_second: float) -> int | None:
    """Seconds until place `position` is served; None when not queued."""
    if position <= 0:
        return None
    if rate_per_second <= 0:
        return None
    return max(1, math.ceil(position / rate_per_second))
