"""A lean Django handler for service-token calls to the v1 session API (issue 11, P9).

Under ASGI every built-in middleware runs its hooks through `sync_to_async`: the eight of the
project cost a create ~17 thread hand-offs, 2.5-3 ms of CPU of ~10 (README, "P9"). A request
that carries `Authorization` is decided by its token alone (api/auth.py: the header always
wins over a cookie), and the v1 views are CSRF-exempt for tokens and answer in plain JSON: the
session, authentication, CSRF, messages, locale and frame middlewares do nothing for it. Such
requests go to a second Django handler whose chain keeps only what still applies — the
security headers and HTTPS redirect, the host check, and the request metrics — in the
project's order. Every other request (pages, the chat API, a browser's v1 calls) takes the
full chain.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

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
    """Django's ASGI handler with the project's middleware list cut down to KEPT."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler reads settings.MIDDLEWARE once, here, at start-up (one thread).
        full = list(settings.MIDDLEWARE)
        settings.MIDDLEWARE = [name for name in full if name in KEPT]
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


class LeanApiRouter:
    """Sends token calls to the v1 session API to the lean handler, the rest to `full`."""

    def __init__(self, full: Any) -> None:
        self.full = full
        self.lean = LeanApiHandler()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.lean if takes_lean_path(scope) else self.full
        await app(scope, receive, send)
