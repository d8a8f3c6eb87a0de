"""The staff console's live feed, `/ws/console/`: server-rendered fragments, coalesced.

Every gate change reaches `notifications.CONSOLE_GROUP` as `console.changed`. A consumer only
marks itself dirty on each one; its push loop renders at most one update per
`MIN_INTERVAL_SECONDS` however many changes arrived, and refreshes every
`REFRESH_SECONDS` anyway, so time-driven columns ("idle for", "connected") stay true while
nothing happens. The charts, costlier and slow to change, are re-rendered every
`CHARTS_SECONDS`. Frames are absolute (whole fragments), so a lost one is healed by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation

from sessions_app.gate.admission import GateUnavailable
from sessions_app.notifications import CONSOLE_GROUP

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 0.25  # at most four pushes a second per console
REFRESH_SECONDS = 5.0
CHARTS_SECONDS = 15.0
RETRY_SECONDS = 2.0


def is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def scope_language(scope: dict[str, Any]) -> str:
    """The page's language, chosen as LocaleMiddleware chose it for the HTTP page."""
    from django.utils.translation.trans_real import parse_accept_lang_header

    candidates = [scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")]
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates += [code for code, _q in parse_accept_lang_header(accept) if code != "*"]
    for code in candidates:
        if not code:
            continue
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # `disconnect` may never run (a crashed handler, a cut-off shutdown): whatever ends
        # this consumer also ends its push loop, which would otherwise re-render forever.
        try:
            await super().__call__(scope, receive, send)
        finally:
            pusher = getattr(self, "_pusher", None)
            if pusher is not None:
                pusher.cancel()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not is_staff(user):
            # Before accept: the handshake is refused (HTTP 403), nothing is ever sent.
            await self.close(code=4403)
            return
        self._dirty = asyncio.Event()
        self._version = 0
        self._language = scope_language(self.scope)
        # The charts' endpoint filter, from the page's own query string (?endpoint=...).
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self._endpoint = (query.get("endpoint") or [""])[0][:300]
        await self.channel_layer.group_add(CONSOLE_GROUP, self.channel_name)
        await self.accept()
        self._pusher: asyncio.Task[None] | None = asyncio.create_task(self._push_loop())

    async def disconnect(self, code: int) -> None:
        pusher = getattr(self, "_pusher", None)
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
        if hasattr(self, "_dirty"):
            await self.channel_layer.group_discard(CONSOLE_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "refresh":
            self._dirty.set()

    async def console_changed(self, event: dict[str, Any]) -> None:
        self._dirty.set()

    @database_sync_to_async
    def _render(self, with_charts: bool) -> dict[str, str]:
        from sessions_app.console.views import endpoint_choice, render_fragments

        with translation.override(self._language):
            return render_fragments(
                user=self.scope["user"],
                with_charts=with_charts,
                endpoint=endpoint_choice(self._endpoint),
            )

    async def _push_loop(self) -> None:
        charts_due = 0.0
        while True:
            self._dirty.clear()
            now = time.monotonic()
            with_charts = now >= charts_due
            try:
                fragments = await self._render(with_charts)
            except GateUnavailable as exc:
                await self.send_json({"type": "console.error", "message": str(exc)})
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:  # a bug in one render must not end the console's feed
                logger.exception("console render failed")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if with_charts:
                charts_due = now + CHARTS_SECONDS
            self._version += 1
            await self.send_json(
                {"type": "console.update", "version": self._version, "fragments": fragments}
            )
            await asyncio.sleep(MIN_INTERVAL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=REFRESH_SECONDS)
