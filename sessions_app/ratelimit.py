"""Per-person (and per-token) fixed-window rate limits, counted in Redis for every process.

One INCR+EXPIRE pipeline per check, and nothing else: cheap on the hot path and global across
server processes. A fixed window lets a burst of at most twice the limit straddle a boundary,
which is fine for stopping floods (the purpose here), not for billing.

Windows follow Redis's clock, so processes whose clocks disagree still count in the same window;
but asking Redis the time before every check doubled the round trips of an API create (the P9
profile, README). Each process asks once in a while and keeps the offset to its own clock.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from sessions_app.gate.admission import get_manager, redis_errors

# How long a measured offset between this process's clock and Redis's is trusted. Clocks drift
# by milliseconds a minute; a window is a minute long.
CLOCK_RECHECK_SECONDS = 30.0
_clock_lock = threading.Lock()
_clock: tuple[float, float, str] | None = None  # (offset, monotonic recheck time, Redis id)


def server_now() -> float:
    """Redis's time now, from this process's clock and an offset measured every 30 s."""
    global _clock
    manager = get_manager()
    ident = manager.keys.tagged + repr(id(manager.client))  # a new store is measured anew
    mono = time.monotonic()
    current = _clock
    if current is None or current[1] <= mono or current[2] != ident:
        before = time.time()
        server = manager.server_time()
        after = time.time()
        current = (server - (before + after) / 2, mono + CLOCK_RECHECK_SECONDS, ident)
        with _clock_lock:
            _clock = current
    return time.time() + current[0]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int  # seconds until the window resets (0 when allowed)
    count: int


def rate_check(*, scope: str, ident: str, limit: int, window_seconds: int = 60) -> RateDecision:
    """Counts one event for (scope, ident); refuses past `limit` in the current window."""
    manager = get_manager()
    now = server_now()
    window = int(now // window_seconds)
    key = manager.keys.rate(scope, ident, window)
    with redis_errors():
        pipe = manager.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, window_seconds * 2)
        result: Any = pipe.execute()
    count = int(result[0])
    if count <= limit:
        return RateDecision(True, 0, count)
    retry_after = max(1, math.ceil((window + 1) * window_seconds - now))
    return RateDecision(False, retry_after, count)
