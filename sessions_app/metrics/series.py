"""Reading the numbers back for the console: the per-minute series and the recent waits."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from sessions_app.gate.admission import (
    AdmissionManager,
    GateUnavailable,
    get_manager,
)
from sessions_app.metrics import tally
from sessions_app.metrics.endpoints import SEP
from sessions_app.metrics.record import GROUPS, RESPONSE_BUCKETS_MS, _minute

logger = logging.getLogger(__name__)

# --- reading: the console's per-minute series -----------------------------------------------


@dataclass(frozen=True)
class GroupMinute:
    requests: int = 0
    errors: int = 0
    refused: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None


@dataclass(frozen=True)
class MinuteStats:
    minute: int  # minutes since the epoch
    groups: dict[str, GroupMinute] = field(default_factory=dict)
    active: int | None = None
    queued: int | None = None
    backend_errors: int = 0  # generations the chat backend failed in this minute

    @property
    def requests(self) -> int:
        return sum(g.requests for g in self.groups.values())

    @property
    def errors(self) -> int:
        return sum(g.errors for g in self.groups.values())

    @property
    def refused(self) -> int:
        return sum(g.refused for g in self.groups.values())


def quantile_from_buckets(counts: Sequence[int], bounds: Sequence[float], q: float) -> float | None:
    """Estimates a quantile from non-cumulative bucket counts by linear interpolation.

    The bucket above the last bound has no upper edge, so a quantile falling there is reported
    as the last bound (a floor, which the charts label as such).
    """
    total = sum(counts)
    if total == 0:
        return None
    target = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            if index >= len(bounds):
                return float(bounds[-1])
            low = 0.0 if index == 0 else float(bounds[index - 1])
            high = float(bounds[index])
            return low + (high - low) * (target - seen) / count
        seen += count
    return float(bounds[-1])


def _int(data: dict[str, str], name: str) -> int:
    return int(float(data.get(name, 0) or 0))


def _group(data: dict[str, str], prefix: str) -> GroupMinute:
    counts = [_int(data, f"{prefix}b{i}") for i in range(len(RESPONSE_BUCKETS_MS) + 1)]
    return GroupMinute(
        requests=_int(data, f"{prefix}n"),
        errors=_int(data, f"{prefix}err"),
        refused=_int(data, f"{prefix}4xx"),
        p50_ms=quantile_from_buckets(counts, RESPONSE_BUCKETS_MS, 0.50),
        p95_ms=quantile_from_buckets(counts, RESPONSE_BUCKETS_MS, 0.95),
    )


def _parse_minute(minute: int, data: dict[str, str], endpoint: str | None = None) -> MinuteStats:
    if endpoint is None:
        groups = {group: _group(data, f"{group}:") for group in GROUPS}
    else:
        groups = {endpoint: _group(data, f"e:{endpoint}{SEP}")}
    return MinuteStats(
        minute=minute,
        groups=groups,
        active=_int(data, "g:active") if "g:active" in data else None,
        queued=_int(data, "g:queued") if "g:queued" in data else None,
        backend_errors=_int(data, "ev:backend_errors"),
    )


def minute_series(
    *,
    minutes: int = 60,
    now: float | None = None,
    endpoint: str | None = None,
    manager: AdmissionManager | None = None,
) -> list[MinuteStats]:
    """The last `minutes` minutes, oldest first, read in one pipeline.

    With `endpoint` (a route label), the request figures are that endpoint's alone, in one
    group named after it; the gauges are the same either way."""
    manager = manager or get_manager()
    now = time.time() if now is None else now
    last = _minute(now)
    wanted = list(range(last - minutes + 1, last + 1))
    pipe = manager.client.pipeline(transaction=False)
    for minute in wanted:
        pipe.hgetall(manager.keys.metrics_minute(minute))
    try:
        tally.flush(manager)  # this process's last second of requests too
        raw: list[Any] = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise GateUnavailable(str(exc)) from exc
    series = []
    for minute, data in zip(wanted, raw, strict=True):
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in data.items()
        }
        series.append(_parse_minute(minute, decoded, endpoint))
    return series


def endpoint_routes(manager: AdmissionManager | None = None) -> list[str]:
    """Every route label that has served a request since the counters began, sorted."""
    manager = manager or get_manager()
    try:
        tally.flush(manager)
        fields: Any = manager.client.hkeys(manager.keys.metrics_endpoints())
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise GateUnavailable(str(exc)) from exc
    routes = {(f.decode() if isinstance(f, bytes) else f).split(SEP, 1)[0] for f in fields}
    return sorted(routes)


def wait_percentiles(
    waits: Sequence[tuple[float, float]], *, now: float, window_seconds: float = 3600
) -> tuple[float | None, float | None, int]:
    """Median and 90th percentile of the waits admitted within the window, and how many."""
    recent = sorted(w for when, w in waits if now - when <= window_seconds)
    if not recent:
        return None, None, 0

    def pick(q: float) -> float:
        # Nearest-rank: the smallest wait at least q of the people did not exceed.
        rank = max(1, math.ceil(q * len(recent)))
        return recent[rank - 1]

    return pick(0.5), pick(0.9), len(recent)


@dataclass(frozen=True)
class WaitStats:
    """Queue waits of the people admitted within the window (console gauges and chart)."""

    p50: float | None
    p90: float | None
    count: int
    now: float
    waits: list[tuple[float, float]]  # (admitted at, seconds waited), newest first


def wait_stats(
    *, window_seconds: float = 3600, manager: AdmissionManager | None = None
) -> WaitStats:
    """The recent waits as the admission scripts logged them, with the window's percentiles."""
    manager = manager or get_manager()
    now = manager.server_time()
    waits = manager.recent_waits()
    p50, p90, count = wait_percentiles(waits, now=now, window_seconds=window_seconds)
    return WaitStats(p50=p50, p90=p90, count=count, now=now, waits=waits)
