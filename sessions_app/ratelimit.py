"""Per-person (and per-token) fixed-window rate limits, counted in Redis for every process.

One small script per request, and nothing else: cheap on the hot path and global across server
processes. A request with several limits (an API create counts against its token and its
person) has them all counted by the one script, in order, and a limit that refuses stops the
count there, so a call refused for its token is not counted against the person.

A fixed window lets a burst of at most twice the limit straddle a boundary, which is fine for
stopping floods (the purpose here), not for billing.

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

from redis.commands.core import Script

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


# KEYS: the counters, in the order the limits are checked. ARGV[1]: a counter's lifetime in
# seconds; ARGV[i + 1]: KEYS[i]'s limit. Each counter is incremented in turn until one passes its
# limit. Returns the counts made. A counter's key names its window, so it needs one expiry.
COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, ARGV[1]) end
  counts[i] = count
  if count > tonumber(ARGV[i + 1]) then break end
end
return counts
"""
# Bytes: the digest needs no client's encoder, so one object serves every client (`client=`).
COUNT = Script(None, COUNT_SCRIPT.encode())  # type: ignore[arg-type]


@dataclass(frozen=True)
class Limit:
    scope: str
    ident: str
    limit: int


def rate_check(*, scope: str, ident: str, limit: int, window_seconds: int = 60) -> RateDecision:
    """Counts one event for (scope, ident); refuses past `limit` in the current window."""
    return rate_check_all([Limit(scope, ident, limit)], window_seconds=window_seconds)[1]


def rate_check_all(
    limits: list[Limit], *, window_seconds: int = 60
) -> tuple[Limit | None, RateDecision]:
    """Counts one event against each limit in order, in one round trip to Redis.

    Returns the first limit that refused and its decision, or (None, an allowed decision).
    Limits after a refusing one are not counted.
    """
    manager = get_manager()
    now = server_now()
    window = int(now // window_seconds)
    keys = [manager.keys.rate(each.scope, each.ident, window) for each in limits]
    with redis_errors():
        args = [window_seconds * 2, *(each.limit for each in limits)]
        counts: Any = COUNT(keys=keys, args=args, client=manager.client)
    for each, count in zip(limits, counts, strict=False):
        if int(count) > each.limit:
            retry_after = max(1, math.ceil((window + 1) * window_seconds - now))
            return each, RateDecision(False, retry_after, int(count))
    return None, RateDecision(True, 0, int(counts[-1]) if counts else 0)
