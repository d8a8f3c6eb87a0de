"""Per-person (and per-token) fixed-window rate limits, counted in Redis for every process.

One INCR+EXPIRE pipeline per check: cheap on the hot path and global across server processes.
A fixed window lets a burst of at most twice the limit straddle a boundary, which is fine for
stopping floods (the purpose here), not for billing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sessions_app.gate.admission import get_manager, redis_errors


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int  # seconds until the window resets (0 when allowed)
    count: int


def rate_check(*, scope: str, ident: str, limit: int, window_seconds: int = 60) -> RateDecision:
    """Counts one event for (scope, ident); refuses past `limit` in the current window."""
    manager = get_manager()
    now = manager.server_time()
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
