"""Request metrics counted in Redis: per minute for the API and chat groups, and per endpoint
(route template, see `metrics/endpoints.py`) for every resolved request and the 404s.

Cheap on the hot path: static files cost one string test; a measured request costs one Redis
pipeline. Under ASGI (daphne) the write is handed to a
thread and not awaited, so the response never waits for it. Metrics never fail a request.
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
        elapsed = time.perf_counter() - started
        group = metrics.classify(request.path, _view_module(request))
        route = metrics.endpoint_label(request)
        if group is not None or route is not None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                None, self._write, group, route, request.method, response.status_code, elapsed
            )
            self._pending.add(future)  # a reference, so the write is not collected mid-way
            future.add_done_callback(self._pending.discard)
        return response

    def _record(self, request: HttpRequest, status: int, elapsed: float) -> None:
        group = metrics.classify(request.path, _view_module(request))
        route = metrics.endpoint_label(request)
        if group is not None or route is not None:
            self._write(group, route, request.method, status, elapsed)

    def _write(
        self, group: str | None, route: str | None, method: str | None, status: int, elapsed: float
    ) -> None:
        try:
            manager = get_manager()
            metrics.request_record(
                group=group,
                route=route,
                method=metrics.method_label(method),
                status=status,
                seconds=elapsed,
                manager=manager,
            )
            now = time.monotonic()
            if now >= self._next_sample:
                self._next_sample = now + GAUGE_SAMPLE_SECONDS
                counts = manager.counts()
                metrics.gauges_sample(
                    active=counts["active"], queued=counts["queued"], manager=manager
                )
        except Exception:  # metrics must never fail or slow down the request they measure
            logger.debug("request metrics not recorded", exc_info=True)
