"""A lean Django handler for service-token calls to the v1 session API (issue 11, P9).

Under ASGI, Django runs every sync middleware hook, signal receiver and view through
`sync_to_async`, in a thread made for each request (`ThreadSensitiveContext`): a create crossed
threads ~17 times and spent most of its CPU on that, not on the gate (README, "P9"). A request
that carries `Authorization` is decided by its token alone (api/auth.py: the header always wins
over a cookie), and the v1 views are CSRF-exempt for tokens and answer in plain JSON: the
session, authentication, CSRF, messages, locale and frame middlewares do nothing for it.

Such requests go to this handler instead. It reads the body on the event loop, then runs the
whole request — the request object, the middleware chain that still applies (security headers
and HTTPS redirect, the host check, the request metrics; in the project's order), URL resolving
and the view — *synchronously*, as a WSGI server would, in one hop to the process's API pool
(api/views.py: API_CONCURRENCY threads that live as long as the process). One thread crossing
per request, and at most API_CONCURRENCY requests at once in a process, as before.

What Django's ASGI handler does and this one does not: it sends no `request_started` /
`request_finished` signals (their receivers close the thread's database connections, which
`views.release_connections` already does by the API pool's rule, and reset debug query logs),
and it does not cancel a view when the client disconnects (a create that reached the gate
finishes either way). Every other request (pages, the chat API, a browser's v1 calls) takes the
full chain.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from sessions_app.api import views

PREFIX = "/api/v1/session/"
KEPT = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "sessions_app.middleware.RequestMetricsMiddleware",
)


def takes_lean_path(scope: dict[str, Any]) -> bool:
    """A token's call to the v1 session API (HTTP, the prefix, an Authorization header)."""
    if scope.get("type") != "http" or not str(scope.get("path", "")).startswith(PREFIX):
        return False
    return any(name.lower() == b"authorization" for name, _value in scope.get("headers", ()))


class LeanApiHandler(ASGIHandler):
    """Django's handler, cut down to KEPT and run synchronously on the API pool."""

    def __init__(self) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler: ASGIHandler would load async
        self.load_middleware(is_async=False)

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler reads settings.MIDDLEWARE once, here, at start-up (one thread).
        full = list(settings.MIDDLEWARE)
        settings.MIDDLEWARE = [name for name in full if name in KEPT]
        try:
            super().load_middleware(is_async=False)
        finally:
            settings.MIDDLEWARE = full

    def make_view_atomic(self, view: Any) -> Any:
        # BaseHandler calls this on the resolved view. A `pooled` view is async only to hop to
        # the API pool; this handler is already there, so it calls the sync body directly.
        return super().make_view_atomic(getattr(view, "sync_view", view))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(views.api_pool(), self._respond, scope, body_file)
        finally:
            body_file.close()
        await self.send_response(response, send)

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """The request, start to end, on one API pool thread."""
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            response = self.get_response(request) if request is not None else error_response
            assert response is not None  # create_request gives a request or an error answer
            # Not `response.close()`: its only work for these in-memory JSON answers would be
            # the `request_finished` signal, whose receiver closes this pool thread's database
            # connection, which the next request would then open again (~0.9 ms on SQLite).
            return response
        finally:
            views.release_connections()


class LeanApiRouter:
    """Sends token calls to the v1 session API to the lean handler, the rest to `full`."""

    def __init__(self, full: Any) -> None:
        self.full = full
        self.lean = LeanApiHandler()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.lean if takes_lean_path(scope) else self.full
        await app(scope, receive, send)
