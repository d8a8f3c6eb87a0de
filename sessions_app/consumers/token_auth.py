"""API tokens on `/ws/chat/` (programs): `Authorization: Bearer <token>`, or `?token=` for
clients that cannot set headers (browsers' WebSocket, some libraries), acting for the token's
owner or, with the act-for-users right, for `?user_id=` (the rules of api/auth.py).

A handshake that carries a token skips the Origin check and the session cookie: the Origin
check exists because a browser sends cookies to any page's socket (cross-site WebSocket
hijacking); a token is never sent ambiently, so a foreign page cannot ride one, and programs
send no Origin at all. A bad token is not silently turned into the cookie's user: the consumer
accepts, sends an `error` frame with the code, and closes (4401/4403/4404), so a program can
tell why. Only the chat socket takes tokens; the staff console stays cookie-only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from sessions_app.api.auth import _token_caller, subject_for
from sessions_app.api.errors import ApiError

TOKEN_PATHS = ("/ws/chat",)


def _credentials(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    """(Authorization header value, user_id) when the handshake carries a token, else None."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    user_id = (query.get("user_id") or [None])[0]
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            return value.decode("latin-1"), user_id
    token = (query.get("token") or [None])[0]
    if token:
        return f"Bearer {token}", user_id
    return None, user_id


def _resolve(header: str, user_id: str | None) -> tuple[Any, Any]:
    caller = _token_caller(header)
    return subject_for(caller, user_id, provision=False, in_path=True), caller.token


class TokenAuthMiddleware:
    """Routes a chat handshake with a token to `token_app` with scope["user"] set (or
    scope["auth_error"]); every other handshake to `cookie_app` (Origin check + cookie)."""

    def __init__(self, *, token_app: Any, cookie_app: Any) -> None:
        self.token_app = token_app
        self.cookie_app = cookie_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        path = scope.get("path", "")
        header, user_id = _credentials(scope) if path.startswith(TOKEN_PATHS) else (None, None)
        if header is None:
            return await self.cookie_app(scope, receive, send)
        scope = dict(scope)
        try:
            scope["user"], scope["api_token"] = await database_sync_to_async(_resolve)(
                header, user_id
            )
        except ApiError as exc:
            from django.contrib.auth.models import AnonymousUser

            scope["user"] = AnonymousUser()
            scope["auth_error"] = {
                "code": exc.code,
                "message": exc.message,
                "close": 4000 + exc.status,
            }
        return await self.token_app(scope, receive, send)
