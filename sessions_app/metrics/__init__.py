"""Operational numbers, all kept in Redis so that every server process reports the same truth.

Four kinds live here, all importable from `sessions_app.metrics` (writing in `record.py`,
reading for the console in `series.py`):

* **Per-minute request metrics** (written by `RequestMetricsMiddleware`): one hash per minute
  with request, error and response-time bucket counts for the API and the chat endpoints, plus
  a sample of the active/queued gauges. Each process adds its requests up and writes them
  in one pipeline a second (`tally.py`); every hash expires after
  `METRICS_RETENTION_SECONDS` (a day by default). The console's charts read the last hour.
* **Cumulative histograms and counters** for Prometheus: the wait histogram is folded from the
  admission scripts' `waits` list (so the Lua scripts stay untouched); the generation-time
  histogram, chat messages and backend errors are observed by the chat consumer through
  `generation_observe()` and `chat_event()`.
* **Per-endpoint request metrics** (`endpoints.py`): requests, errors and latency per route
  template, so labels stay bounded whatever paths clients invent.
* **The `/metrics` collector** (`exposition.py`): gauges from the live Redis state, counters
  from the admission scripts' `stats` hash, and the histograms above.

Minutes are bucketed by each process's own clock (`time.time()`): asking Redis for TIME on
every request would double the hot path's round trips, and a clock skew of a few seconds only
moves a request to the neighbouring minute.
"""

from sessions_app.metrics.endpoints import UNMATCHED, endpoint_label, method_label, route_template
from sessions_app.metrics.exposition import STAT_COUNTERS, GateCollector, metrics_text
from sessions_app.metrics.record import (
    CHAT_EVENTS,
    GENERATION_BUCKETS,
    GROUPS,
    RESPONSE_BUCKETS_MS,
    WAIT_BUCKETS,
    answer_observe,
    chat_event,
    classify,
    gauges_sample,
    generation_observe,
    request_record,
    waits_fold,
)
from sessions_app.metrics.series import (
    GroupMinute,
    MinuteStats,
    WaitStats,
    endpoint_routes,
    minute_series,
    quantile_from_buckets,
    wait_percentiles,
    wait_stats,
)

__all__ = [
    "CHAT_EVENTS",
    "GENERATION_BUCKETS",
    "GROUPS",
    "RESPONSE_BUCKETS_MS",
    "STAT_COUNTERS",
    "UNMATCHED",
    "WAIT_BUCKETS",
    "GateCollector",
    "GroupMinute",
    "MinuteStats",
    "WaitStats",
    "answer_observe",
    "chat_event",
    "classify",
    "endpoint_label",
    "endpoint_routes",
    "gauges_sample",
    "generation_observe",
    "method_label",
    "metrics_text",
    "minute_series",
    "quantile_from_buckets",
    "request_record",
    "route_template",
    "wait_percentiles",
    "wait_stats",
    "waits_fold",
]
