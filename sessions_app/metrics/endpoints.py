"""Per-endpoint request metrics: requests, errors and latency under the route template.

The label is the URLconf pattern a request resolved to (`/api/v1/session/position/{user_id}`),
never the raw path, so the number of label values is bounded by the URLconf whatever paths
clients invent; every request that resolved to nothing (404 before any view) shares one label,
`unmatched`. Methods outside the standard set share `OTHER` for the same reason.

This module only names things and queues writes on the caller's pipeline; reading lives in
`series.py` (console) and `exposition.py` (`/metrics`), so it imports nothing of theirs.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from sessions_app.gate.keys import RedisKeys

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Field separator inside the Redis hashes; a route template never contains it (see below).
SEP = "|"

# `(?P<name>...)` of re_path() patterns first, then `<conv:name>` of path() patterns.
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_CONVERTER = re.compile(r"<(?:[^>:]+:)?([^>]+)>")


def route_template(route: str) -> str:
    """`api/v1/session/position/<str:user_id>` → `/api/v1/session/position/{user_id}`."""
    text = _NAMED_GROUP.sub(r"{\1}", route)
    text = _CONVERTER.sub(r"{\1}", text)
    text = text.replace("^", "").replace("$", "").replace("\\", "").replace(SEP, "/")
    return "/" + text.lstrip("/")


def endpoint_label(request: HttpRequest) -> str | None:
    """The route label of a request, or None for static files (not worth a label)."""
    static = str(getattr(settings, "STATIC_URL", "") or "")
    if static.startswith("/") and request.path.startswith(static):
        return None
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if not route:
        return UNMATCHED
    return route_template(route)


def method_label(method: str | None) -> str:
    method = (method or "").upper()
    return method if method in METHODS else "OTHER"


def count_request(pipe: Any, key: str, prefix: str, *, status: int, ms: float, bucket: int) -> None:
    """Queues one request's fields under `prefix` in the hash `key`: the count, the errors
    (5xx) or refusals (4xx), its latency bucket and the latency sum. The per-group minute
    (record.py) and the per-route counts below are all kept this way."""
    pipe.hincrby(key, f"{prefix}n", 1)
    if status >= 500:
        pipe.hincrby(key, f"{prefix}err", 1)
    elif status >= 400:
        pipe.hincrby(key, f"{prefix}4xx", 1)
    pipe.hincrby(key, f"{prefix}b{bucket}", 1)
    pipe.hincrbyfloat(key, f"{prefix}ms", round(ms, 3))


def endpoint_pipe(
    pipe: Any,
    keys: RedisKeys,
    *,
    minute_key: str,
    route: str,
    method: str,
    status: int,
    ms: float,
    bucket: int,
) -> None:
    """Queues one request's counts: cumulative per route and method (for `/metrics`), and per
    route in the minute's hash (for the console's charts, filtered by endpoint)."""
    method = method_label(method)
    total = keys.metrics_endpoints()
    for prefix, key in ((f"{route}{SEP}{method}{SEP}", total), (f"e:{route}{SEP}", minute_key)):
        count_request(pipe, key, prefix, status=status, ms=ms, bucket=bucket)
