"""The project's ASGI application plus one bench-only route, `/ws/bare/`: a bare
AsyncWebsocketConsumer behind the same Origin check and cookie login, in the same daphne and
settings, so that page_memory_bench.py can compare a waiting chat page with it.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator

from config.asgi import application as project


class BareConsumer(AsyncWebsocketConsumer):
    """Accepts and holds the socket; nothing else (the same-run baseline)."""


bare = AllowedHostsOriginValidator(AuthMiddlewareStack(BareConsumer.as_asgi()))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket" and scope["path"] == "/ws/bare/":
        return await bare(scope, receive, send)
    return await project(scope, receive, send)
