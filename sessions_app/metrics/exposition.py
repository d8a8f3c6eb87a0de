"""The `/metrics` collector: reads the global truth from Redis at every scrape."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
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
from sessions_app.gate import journal
from sessions_app.gate.admission import (
    CLOSE_REASONS,
    AdmissionManager,
    GateUnavailable,
    get_manager,
)
from sessions_app.metrics import tally
from sessions_app.metrics.endpoints import SEP
from sessions_app.metrics.record import (
    GENERATION_BUCKETS,
    RESPONSE_BUCKETS_MS,
    WAIT_BUCKETS,
    _bucket_field,
    gauges_sample,
    waits_fold,
)

logger = logging.getLogger(__name__)

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
        tally.flush(manager)  # this process's last second of requests too
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
        # The session journal (gate/journal.py): changes not yet written to the SQL record. It
        # grows while the database is down or no sweeper runs (about 120 bytes a change, no cap),
        # so an operator watches it; the oldest entry's age says how far the record is behind.
        yield gauge(
            "chatgate_journal_pending",
            "Session changes in the journal not yet written to the SQL record.",
            journal.pending(manager),
        )
        yield gauge(
            "chatgate_journal_behind_seconds",
            "How long the oldest unwritten session change has waited (0 when none).",
            max(0.0, journal.oldest_age_ms(manager) / 1000),
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
        yield from _endpoint_families(_hgetall(manager, manager.keys.metrics_endpoints()))


def _endpoint_families(data: dict[str, str]) -> Iterator[Metric]:
    """Per route template and method: requests, 4xx, 5xx, and a latency histogram (seconds)."""
    labels = ["route", "method"]
    requests = CounterMetricFamily(
        "chatgate_http_requests", "HTTP requests, by route template.", labels=labels
    )
    refused = CounterMetricFamily(
        "chatgate_http_refused", "HTTP requests answered 4xx, by route template.", labels=labels
    )
    errors = CounterMetricFamily(
        "chatgate_http_errors", "HTTP requests answered 5xx, by route template.", labels=labels
    )
    latency = HistogramMetricFamily(
        "chatgate_http_request_seconds", "HTTP response time, by route template.", labels=labels
    )
    series: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in data.items():
        route, method, field = name.split(SEP, 2)
        series.setdefault((route, method), {})[field] = float(value or 0)
    for (route, method), fields in sorted(series.items()):
        requests.add_metric([route, method], fields.get("n", 0))
        refused.add_metric([route, method], fields.get("4xx", 0))
        errors.add_metric([route, method], fields.get("err", 0))
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for index in range(len(RESPONSE_BUCKETS_MS) + 1):
            cumulative += fields.get(f"b{index}", 0)
            edge = (
                floatToGoString(RESPONSE_BUCKETS_MS[index] / 1000.0)
                if index < len(RESPONSE_BUCKETS_MS)
                else "+Inf"
            )
            buckets.append((edge, cumulative))
        latency.add_metric([route, method], buckets, fields.get("ms", 0) / 1000.0)
    yield from (requests, refused, errors, latency)


def metrics_text(manager: AdmissionManager | None = None) -> bytes:
    """The Prometheus text exposition of the gate (a fresh registry: no per-process state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GateCollector(manager))
    return generate_latest(registry)
