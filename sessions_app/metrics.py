"""Operational numbers, all kept in Redis so that every server process reports the same truth.

Three kinds live here:

* **Per-minute request metrics** (written by `RequestMetricsMiddleware`): one hash per minute
  with request, error and response-time bucket counts for the API and the chat endpoints, plus
  a sample of the active/queued gauges. One pipeline per request; every hash expires after
  `METRICS_RETENTION_SECONDS` (a day by default). The console's charts read the last hour.
* **Cumulative histograms and counters** for Prometheus: the wait histogram is folded from the
  admission scripts' `waits` list (so the Lua scripts stay untouched); the generation-time
  histogram, chat messages and backend errors are observed by the chat consumer through
  `generation_observe()` and `chat_event()`.
* **The `/metrics` collector**: gauges from the live Redis state, counters from the admission
  scripts' `stats` hash, and the histograms above.

Minutes are bucketed by each process's own clock (`time.time()`): asking Redis for TIME on
every request would double the hot path's round trips, and a clock skew of a few seconds only
moves a request to the neighbouring minute.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sessions_app import conf
from sessions_app.gate.admission import (
    CLOSE_REASONS,
    AdmissionManager,
    GateUnavailable,
    get_manager,
)

logger = logging.getLogger(__name__)

GROUPS = ("api", "chat")
# Response-time buckets in milliseconds (upper bounds; one more bucket above the last).
RESPONSE_BUCKETS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Queue waits in seconds: from "let straight in" to "waited an hour".
WAIT_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
# Generation (first token requested to last token sent) in seconds.
GENERATION_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
CHAT_EVENTS = ("chat_messages", "backend_errors", "capacity_timeouts", "cancelled")


def _minute(now: float) -> int:
    return int(now // 60)


def _bucket_index(value: float, bounds: Sequence[float]) -> int:
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


def _bucket_field(index: int, bounds: Sequence[float]) -> str:
    return f"le:{bounds[index]:g}" if index < len(bounds) else "le:+Inf"


# --- writing (hot path) --------------------------------------------------------------------


def classify(path: str, view_module: str = "") -> str | None:
    """Which group a request counts in, or None for pages we do not measure (admin, static)."""
    if path.startswith("/api/"):
        return "api"
    if view_module.startswith("sessions_app.views.chat"):
        return "chat"
    return None


def request_record(
    *,
    group: str,
    status: int,
    seconds: float,
    now: float | None = None,
    manager: AdmissionManager | None = None,
) -> None:
    """Counts one request in its minute: one pipeline (four increments and an expiry)."""
    manager = manager or get_manager()
    now = time.time() if now is None else now
    key = manager.keys.metrics_minute(_minute(now))
    ms = seconds * 1000.0
    pipe = manager.client.pipeline(transaction=False)
    pipe.hincrby(key, f"{group}:n", 1)
    if status >= 500:
        pipe.hincrby(key, f"{group}:err", 1)
    elif status >= 400:
        pipe.hincrby(key, f"{group}:4xx", 1)
    pipe.hincrby(key, f"{group}:b{_bucket_index(ms, RESPONSE_BUCKETS_MS)}", 1)
    pipe.hincrbyfloat(key, f"{group}:ms", round(ms, 3))
    pipe.expire(key, int(conf.get("METRICS_RETENTION_SECONDS")))
    pipe.execute()


def gauges_sample(
    *, active: int, queued: int, now: float | None = None, manager: AdmissionManager | None = None
) -> None:
    """Keeps the latest active/queued counts of this minute, for the console's hour chart.

    Called wherever the gate's counts are read anyway (console pushes, `/metrics` scrapes, and
    the middleware at most every few seconds per process), so no extra process is needed.
    """
    manager = manager or get_manager()
    now = time.time() if now is None else now
    key = manager.keys.metrics_minute(_minute(now))
    pipe = manager.client.pipeline(transaction=False)
    pipe.hset(key, mapping={"g:active": active, "g:queued": queued})
    pipe.expire(key, int(conf.get("METRICS_RETENTION_SECONDS")))
    pipe.execute()


def _observe(manager: AdmissionManager, name: str, value: float, bounds: Sequence[float]) -> None:
    key = manager.keys.metrics_histogram(name)
    pipe = manager.client.pipeline(transaction=True)
    pipe.hincrby(key, _bucket_field(_bucket_index(value, bounds), bounds), 1)
    pipe.hincrbyfloat(key, "sum", value)
    pipe.hincrby(key, "count", 1)
    pipe.execute()


def generation_observe(*, seconds: float, manager: AdmissionManager | None = None) -> None:
    """The chat consumer calls this once per finished generation (any outcome)."""
    try:
        _observe(manager or get_manager(), "generation", max(seconds, 0.0), GENERATION_BUCKETS)
    except redis.RedisError:
        logger.debug("could not record a generation time", exc_info=True)


def answer_observe(
    *,
    seconds: float | None,
    event: str | None = None,
    manager: AdmissionManager | None = None,
) -> None:
    """How one answer ended, in one round trip: its generation time and/or a chat event."""
    if event is not None and event not in CHAT_EVENTS:
        raise ValueError(f"unknown chat event {event!r}")
    manager = manager or get_manager()
    pipe = manager.client.pipeline(transaction=False)
    if seconds is not None:
        value = max(seconds, 0.0)
        key = manager.keys.metrics_histogram("generation")
        bucket = _bucket_field(_bucket_index(value, GENERATION_BUCKETS), GENERATION_BUCKETS)
        pipe.hincrby(key, bucket, 1)
        pipe.hincrbyfloat(key, "sum", value)
        pipe.hincrby(key, "count", 1)
    if event is not None:
        pipe.hincrby(manager.keys.metrics_counters(), event, 1)
    try:
        pipe.execute()
    except redis.RedisError:
        logger.debug("could not record an answer's metrics", exc_info=True)


def chat_event(name: str, *, amount: int = 1, manager: AdmissionManager | None = None) -> None:
    """Counts a chat event (`chat_messages`, `backend_errors`, ...) for `/metrics`."""
    if name not in CHAT_EVENTS:
        raise ValueError(f"unknown chat event {name!r}")
    manager = manager or get_manager()
    try:
        manager.client.hincrby(manager.keys.metrics_counters(), name, amount)
    except redis.RedisError:
        logger.debug("could not count %s", name, exc_info=True)


def _waits_after(pipe: Any, key: str, mark: float) -> list[tuple[float, float]]:
    """The waits logged after `mark`. The list is newest first and its times never go back
    (scripts run one at a time on Redis' clock), so reading stops at the first old entry:
    a fold reads only what is new, in chunks, not all 2,000 entries every time."""
    new: list[tuple[float, float]] = []
    start, chunk = 0, 100
    while True:
        rows: Any = pipe.lrange(key, start, start + chunk - 1)
        for item in rows:
            when, waited = (item.decode() if isinstance(item, bytes) else item).split(":")
            if float(when) <= mark:
                return new
            new.append((float(when), float(waited)))
        if len(rows) < chunk:
            return new
        start += chunk


def waits_fold(manager: AdmissionManager | None = None) -> int:
    """Adds admissions not yet counted to the cumulative wait histogram; returns how many.

    The admission scripts keep the latest 2,000 waits (`waits` list, newest first). A mark
    remembers the newest admission already counted; WATCH makes two processes folding at
    once count each wait exactly once (the loser retries or leaves it for the next scrape).
    More than 2,000 admissions between two folds would be missed, so both `/metrics` scrapes
    and console renders fold.
    """
    manager = manager or get_manager()
    keys = manager.keys
    hist = keys.metrics_histogram("wait")
    mark_key = keys.metrics_wait_mark()
    with manager.client.pipeline(transaction=True) as pipe:
        for _attempt in range(3):
            try:
                pipe.watch(mark_key, keys.waits)
                raw_mark: Any = pipe.get(mark_key)
                mark = float(raw_mark) if raw_mark else 0.0
                new = _waits_after(pipe, keys.waits, mark)
                if not new:
                    pipe.unwatch()
                    return 0
                pipe.multi()
                counts: dict[str, int] = {}
                for _when, waited in new:
                    bucket = _bucket_field(_bucket_index(waited, WAIT_BUCKETS), WAIT_BUCKETS)
                    counts[bucket] = counts.get(bucket, 0) + 1
                for bucket, n in counts.items():
                    pipe.hincrby(hist, bucket, n)
                pipe.hincrbyfloat(hist, "sum", sum(w for _t, w in new))
                pipe.hincrby(hist, "count", len(new))
                pipe.set(mark_key, repr(max(t for t, _w in new)))
                pipe.execute()
                return len(new)
            except redis.WatchError:
                continue
    return 0


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


def _parse_minute(minute: int, data: dict[str, str]) -> MinuteStats:
    groups = {}
    for group in GROUPS:
        counts = [_int(data, f"{group}:b{i}") for i in range(len(RESPONSE_BUCKETS_MS) + 1)]
        groups[group] = GroupMinute(
            requests=_int(data, f"{group}:n"),
            errors=_int(data, f"{group}:err"),
            refused=_int(data, f"{group}:4xx"),
            p50_ms=quantile_from_buckets(counts, RESPONSE_BUCKETS_MS, 0.50),
            p95_ms=quantile_from_buckets(counts, RESPONSE_BUCKETS_MS, 0.95),
        )
    return MinuteStats(
        minute=minute,
        groups=groups,
        active=_int(data, "g:active") if "g:active" in data else None,
        queued=_int(data, "g:queued") if "g:queued" in data else None,
    )


def minute_series(
    *, minutes: int = 60, now: float | None = None, manager: AdmissionManager | None = None
) -> list[MinuteStats]:
    """The last `minutes` minutes, oldest first, read in one pipeline."""
    manager = manager or get_manager()
    now = time.time() if now is None else now
    last = _minute(now)
    wanted = list(range(last - minutes + 1, last + 1))
    pipe = manager.client.pipeline(transaction=False)
    for minute in wanted:
        pipe.hgetall(manager.keys.metrics_minute(minute))
    try:
        raw: list[Any] = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise GateUnavailable(str(exc)) from exc
    series = []
    for minute, data in zip(wanted, raw, strict=True):
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in data.items()
        }
        series.append(_parse_minute(minute, decoded))
    return series


# --- /metrics ---------------------------------------------------------------------------------


def _hgetall(manager: AdmissionManager, key: str) -> dict[str, str]:
    raw: Any = manager.client.hgetall(key)
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def _histogram(
    name: str, documentation: str, data: dict[str, str], bounds: Sequence[float]
) -> HistogramMetricFamily:
    cumulative = 0.0
    buckets: list[tuple[str, float]] = []
    for index in range(len(bounds) + 1):
        cumulative += float(data.get(_bucket_field(index, bounds), 0) or 0)
        label = floatToGoString(bounds[index]) if index < len(bounds) else "+Inf"
        buckets.append((label, cumulative))
    return HistogramMetricFamily(
        name, documentation, buckets=buckets, sum_value=float(data.get("sum", 0) or 0)
    )


# Counters of the admission scripts' `stats` hash: (metric name, field, help).
STAT_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("chatgate_sessions_opened", "opened", "Sessions opened (queued or let straight in)."),
    ("chatgate_admissions", "admissions", "Sessions that became active."),
    ("chatgate_promotions", "promotions", "Automatic promotions from the head of the queue."),
    ("chatgate_staff_admits", "staff_admits", "Sessions staff admitted now (may be over limit)."),
    ("chatgate_staff_fronts", "staff_fronts", "Sessions staff moved to the front of the queue."),
    ("chatgate_leases_reclaimed", "leases_reclaimed", "Query slots reclaimed from dead holders."),
    ("chatgate_queries_started", "queries_started", "Generations granted a query slot."),
)


class GateCollector(Collector):
    """Reads the global truth from Redis at every scrape; holds no state of its own."""

    def __init__(self, manager: AdmissionManager | None = None) -> None:
        self._manager = manager

    def collect(self) -> Iterable[Metric]:
        manager = self._manager or get_manager()
        up = GaugeMetricFamily("chatgate_redis_up", "1 when the admission store answered.")
        try:
            families = list(self._collect(manager))
        except (GateUnavailable, redis.ConnectionError, redis.TimeoutError):
            logger.warning("/metrics: Redis unreachable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _collect(self, manager: AdmissionManager) -> Iterator[Metric]:
        counts = manager.counts()
        live = manager.config()
        stats = manager.stats()
        gauges_sample(active=counts["active"], queued=counts["queued"], manager=manager)
        waits_fold(manager)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        yield gauge("chatgate_active_sessions", "Active sessions now.", counts["active"])
        yield gauge("chatgate_queued_sessions", "People waiting in the queue.", counts["queued"])
        yield gauge("chatgate_generating_queries", "Queries generating now.", counts["in_flight"])
        yield gauge(
            "chatgate_waiting_queries",
            "Queries waiting for a generation slot.",
            counts["waiting_queries"],
        )
        yield gauge(
            "chatgate_max_active_sessions",
            "Limit on active sessions.",
            live.get("max_active_sessions", conf.get("MAX_ACTIVE_SESSIONS")),
        )
        yield gauge(
            "chatgate_max_concurrent_queries",
            "Limit on generating queries.",
            live.get("max_concurrent_queries", conf.get("MAX_CONCURRENT_QUERIES")),
        )
        yield gauge(
            "chatgate_admissions_paused",
            "1 while staff have paused admissions.",
            live.get("admissions_paused", 0),
        )

        for name, stat, doc in STAT_COUNTERS:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], stats.get(stat, 0))
            yield family
        closed = CounterMetricFamily(
            "chatgate_sessions_closed", "Sessions ended, by reason.", labels=["reason"]
        )
        for reason in CLOSE_REASONS:
            closed.add_metric([reason], stats.get(f"closed_{reason}", 0))
        yield closed

        events = _hgetall(manager, manager.keys.metrics_counters())
        for event, name, doc in (
            ("chat_messages", "chatgate_chat_messages", "Chat messages people sent."),
            ("backend_errors", "chatgate_backend_errors", "Generations the chat backend failed."),
            (
                "capacity_timeouts",
                "chatgate_query_capacity_timeouts",
                "Queries that got no generation slot within the query wait limit.",
            ),
            ("cancelled", "chatgate_generations_cancelled", "Generations the person stopped."),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], int(float(events.get(event, 0) or 0)))
            yield family

        yield _histogram(
            "chatgate_queue_wait_seconds",
            "Time from opening a session to becoming active.",
            _hgetall(manager, manager.keys.metrics_histogram("wait")),
            WAIT_BUCKETS,
        )
        yield _histogram(
            "chatgate_generation_seconds",
            "Time a generation held its query slot.",
            _hgetall(manager, manager.keys.metrics_histogram("generation")),
            GENERATION_BUCKETS,
        )


def metrics_text(manager: AdmissionManager | None = None) -> bytes:
    """The Prometheus text exposition of the gate (a fresh registry: no per-process state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GateCollector(manager))
    return generate_latest(registry)


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
