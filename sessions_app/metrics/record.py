"""Writing the numbers: per-minute request counts, gauge samples, histograms and chat events.

One pipeline per call. On the request path the caller (the middleware) swallows Redis errors;
the chat-side observers swallow their own, so an answer never fails for its metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis

from sessions_app import conf
from sessions_app.gate.admission import (
    AdmissionManager,
    get_manager,
)
from sessions_app.gate.keys import RedisKeys
from sessions_app.metrics import endpoints

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
    group: str | None,
    status: int,
    seconds: float,
    route: str | None = None,
    method: str = "GET",
    now: float | None = None,
    manager: AdmissionManager | None = None,
) -> None:
    """Counts one request in its minute, and under its route template when it has one: one
    pipeline (a handful of increments and the expiries)."""
    manager = manager or get_manager()
    pipe = manager.client.pipeline(transaction=False)
    request_fields(
        pipe,
        manager.keys,
        group=group,
        status=status,
        seconds=seconds,
        route=route,
        method=method,
        now=time.time() if now is None else now,
    )
    pipe.execute()


def request_fields(
    pipe: Any,
    keys: RedisKeys,
    *,
    group: str | None,
    status: int,
    seconds: float,
    route: str | None,
    method: str,
    now: float,
) -> None:
    """Queues one request's increments and expiries on `pipe` (a Redis pipeline, or the
    process's tally in `tally.py`, which adds them up until its next write)."""
    key = keys.metrics_minute(_minute(now))
    ms = seconds * 1000.0
    bucket = _bucket_index(ms, RESPONSE_BUCKETS_MS)
    if group is not None:
        endpoints.count_request(pipe, key, f"{group}:", status=status, ms=ms, bucket=bucket)
    if route is not None:
        endpoints.endpoint_pipe(
            pipe,
            keys,
            minute_key=key,
            route=route,
            method=method,
            status=status,
            ms=ms,
            bucket=bucket,
        )
    pipe.expire(key, int(conf.get("METRICS_RETENTION_SECONDS")))


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
        _minute_event(pipe, manager, event, 1)
    try:
        pipe.execute()
    except redis.RedisError:
        logger.debug("could not record an answer's metrics", exc_info=True)


def _minute_event(pipe: Any, manager: AdmissionManager, event: str, amount: int) -> None:
    # Also per minute: the alerts compare "errors in the last minutes" with a threshold, which
    # a cumulative counter alone cannot answer without remembering earlier readings.
    key = manager.keys.metrics_minute(_minute(time.time()))
    pipe.hincrby(key, f"ev:{event}", amount)
    pipe.expire(key, int(conf.get("METRICS_RETENTION_SECONDS")))


def chat_event(name: str, *, amount: int = 1, manager: AdmissionManager | None = None) -> None:
    """Counts a chat event (`chat_messages`, `backend_errors`, ...) for `/metrics`."""
    if name not in CHAT_EVENTS:
        raise ValueError(f"unknown chat event {name!r}")
    manager = manager or get_manager()
    pipe = manager.client.pipeline(transaction=False)
    pipe.hincrby(manager.keys.metrics_counters(), name, amount)
    _minute_event(pipe, manager, name, amount)
    try:
        pipe.execute()
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
