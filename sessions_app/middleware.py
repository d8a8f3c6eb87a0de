"""Request metrics counted in Redis: per minute for the API and chat groups, and per endpoint
(route template, see `metrics/endpoints.py`) for every resolved request and the 404s.

Cheap on the hot path: static files cost one string test; a measured request is added to the
process's tally (`metrics/tally.py`), which a writer thread sends to Redis once a second.
Metrics never fail a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from sessions_app import metrics
from sessions_app.gate.admission import get_manager
from sessions_app.metrics import tally

logger = logging.getLogger(__name__)

# How often one process also samples the active/queued counts for the console's hour chart.
GAUGE_SAMPLE_SECONDS = 10.0


def _view_module(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    func = getattr(match, "func", None)
    return getattr(func, "__module__", "") or ""


class RequestMetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self._next_sample = 0.0
        self._pending: set[asyncio.Future[None]] = set()

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        response: HttpResponseBase = self.get_response(request)
        self._record(request, response.status_code, time.perf_counter() - started)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        # Counting is a few dict updates (metrics/tally.py): done here, on the loop; only the
        # gauge sample, a Redis read every GAUGE_SAMPLE_SECONDS, is handed to a thread.
        if self._count(request, response.status_code, time.perf_counter() - started):
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(None, self._sample)
            self._pending.add(future)  # a reference, so the write is not collected mid-way
            future.add_done_callback(self._pending.discard)
        return response

    def _record(self, request: HttpRequest, status: int, elapsed: float) -> None:
        if self._count(request, status, elapsed):
            self._sample()

    def _count(self, request: HttpRequest, status: int, elapsed: float) -> bool:
        """Adds the request to the process's tally; True when a gauge sample is due."""
        group = metrics.classify(request.path, _view_module(request))
        route = metrics.endpoint_label(request)
        if group is None and route is None:
            return False
        try:
            tally.add(
                group=group,
                route=route,
                method=metrics.method_label(request.method),
                status=status,
                seconds=elapsed,
            )
        except Exception:  # metrics must never fail or slow down the request they measure
            logger.debug("request metrics not counted", exc_info=True)
        now = time.monotonic()
        if now < self._next_sample:
            return False
        self._next_sample = now + GAUGE_SAMPLE_SECONDS
        return True

    def _sample(self) -> None:
        try:
            manager = get_manager()
            counts = manager.counts()
            metrics.gauges_sample(active=counts["active"], queued=counts["queued"], manager=manager)
        except Exception:  # metrics must never fail or slow down the request they measure
            logger.debug("request metrics not recorded", exc_info=True)
