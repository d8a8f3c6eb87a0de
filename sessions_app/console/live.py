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
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.utils import translation

from sessions_app import conf
from sessions_app.consumers.base import GuardedJsonConsumer, scope_language
from sessions_app.gate.admission import GateUnavailable
from sessions_app.notifications import CONSOLE_GROUP

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 0.25  # at most four pushes a second per console
REFRESH_SECONDS = 5.0
CHARTS_SECONDS = 15.0
RETRY_SECONDS = 2.0


def is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


class ConsoleConsumer(GuardedJsonConsumer):
    # The page sends only `refresh` (a button); anything faster than this is not a person.
    frame_budgets = {"refresh": (5.0, 1.0)}

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
        """Renders and pushes until the socket ends; nothing that goes wrong ends it silently."""
        charts_due = 0.0
        while True:
            self._dirty.clear()
            now = time.monotonic()
            with_charts = now >= charts_due
            try:
                fragments = await self._render(with_charts)
            except GateUnavailable as exc:
                await self._push({"type": "console.error", "message": str(exc)})
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:  # a bug in one render must not end the console's feed
                logger.exception("console render failed")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if with_charts:
                charts_due = now + CHARTS_SECONDS
            self._version += 1
            for frame in split_update(self._version, fragments, int(conf.get("MAX_SEND_BYTES"))):
                await self._push(frame)
            await asyncio.sleep(MIN_INTERVAL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=REFRESH_SECONDS)

    async def _push(self, frame: dict[str, Any]) -> None:
        try:
            await self.send_json(frame)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away; the next frame or the disconnect ends us
            logger.warning("console push failed", exc_info=True)


def _size(frame: dict[str, Any]) -> int:
    return len(json.dumps(frame, ensure_ascii=False).encode("utf-8"))


def split_update(version: int, fragments: dict[str, str], cap: int) -> list[dict[str, Any]]:
    """`console.update` frames under `cap` bytes carrying all of `fragments` between them.

    The page applies each frame's fragments by name, so several frames of one version are as
    good as one. A single fragment too large for any frame is left out, logged, and the page
    is told to fetch it over HTTP (`console.poll`: one read of live.json, which has no cap).
    """
    frames: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    too_large: list[str] = []
    for name, html in fragments.items():
        alone = {"type": "console.update", "version": version, "fragments": {name: html}}
        if _size(alone) > cap:
            too_large.append(name)
            continue
        trial = {"type": "console.update", "version": version, "fragments": {**current, name: html}}
        if current and _size(trial) > cap:
            frames.append(
                {"type": "console.update", "version": version, "fragments": dict(current)}
            )
            current = {}
        current[name] = html
    if current or not frames:
        frames.append({"type": "console.update", "version": version, "fragments": current})
    if too_large:
        logger.error(
            "console fragments %s exceed the %d-byte frame cap; page told to poll", too_large, cap
        )
        frames.append({"type": "console.poll", "version": version, "fragments_missing": too_large})
    return frames
