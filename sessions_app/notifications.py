"""Every push to a WebSocket goes through here: group names, event types, and the sending.

Pushes are at-most-once (channels-redis drops on a full channel), so every queue frame a
consumer sends is absolute; a lost push is healed by the next one. Sending never fails the
caller: the state change already happened, and a missed notice is repaired by the next frame
or by the page's own resync.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import time
from typing import Any

from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

# One group per process fan-out registry: a queue change costs one message per process.
QUEUE_GROUP = "gate.queue"
# Staff consoles; each console consumer coalesces updates itself.
CONSOLE_GROUP = "gate.console"


def session_group(session_id: str) -> str:
    """All sockets of one person's session (two tabs, two server processes)."""
    return f"gate.session.{session_id}"


def user_group(user_id: object) -> str:
    """Every open chat page of one person: conversations and their messages are the person's,
    not the seat's, so a rename over HTTP or an answer reaches all of them."""
    return f"chat.user.{user_id}"


class _Sender:
    """Sends from synchronous code (services run in worker threads) on ONE event loop per
    process, kept in a daemon thread. The channel layer's Redis pool lives on that loop and is
    reused; `async_to_sync` would instead start a new loop, and so a new Redis connection, for
    every notice (measured: ~3 ms per notice, most of a session open's cost)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._scheduled: set[str] = set()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="chatgate-notify", daemon=True
                )
                thread.start()
                self._loop = loop
                atexit.register(self.flush)
            return self._loop

    def submit(self, group: str, message: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._send(group, message), self._get_loop())
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def submit_coalesced(self, group: str, message: dict[str, Any], delay: float) -> None:
        """At most one send per `delay` for this group: later calls fold into the scheduled one."""
        with self._lock:
            if group in self._scheduled:
                return
            self._scheduled.add(group)
        future = asyncio.run_coroutine_threadsafe(
            self._send_later(group, message, delay), self._get_loop()
        )
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    async def _send_later(self, group: str, message: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        with self._lock:
            self._scheduled.discard(group)
        await self._send(group, message)

    def submit_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """Many notices as one task: in order per group, at most SEND_CONCURRENCY at a time
        (a batch of hundreds sent at once would exhaust the channel layer's Redis pool)."""
        future = asyncio.run_coroutine_threadsafe(self._send_many(sends), self._get_loop())
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    async def _send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        listening = await _groups_listening({group for group, _ in sends})
        chunk: list[tuple[str, dict[str, Any]]] = []
        for group, message in [*[(g, m) for g, m in sends if g in listening], ("", {})]:
            # A group already in the chunk waits for the next one, so its notices keep order.
            if not group or len(chunk) >= SEND_CONCURRENCY or any(g == group for g, _ in chunk):
                await asyncio.gather(*(self._send(g, m) for g, m in chunk))
                chunk = []
            if group:
                chunk.append((group, message))

    @staticmethod
    async def _send(group: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            await layer.group_send(group, message)
        except Exception:  # the change is done; a lost notice is healed by the next frame
            logger.warning("could not notify %s of %s", group, message.get("type"), exc_info=True)

    def flush(self, timeout: float = 5.0) -> None:
        """Waits for notices still on their way (commands that exit right after a change)."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=timeout)


async def _groups_listening(groups: set[str]) -> set[str]:
    """The groups that have a member, in one pipelined look per Redis host: most seats of a
    batch have no open socket (API clients, pages already gone), and a `group_send` to an empty
    group still costs two round trips and most of the journal writer's CPU. A socket that joins
    after this look reads its state on connecting, as it does after any missed push."""
    layer = get_channel_layer()
    if not isinstance(layer, RedisChannelLayer) or not groups:
        return groups
    try:
        by_host: dict[int, list[str]] = {}
        for group in groups:
            by_host.setdefault(layer.consistent_hash(group), []).append(group)
        # group_send drops members older than group_expiry first; those do not count.
        floor = f"({int(time.time()) - layer.group_expiry}"
        listening: set[str] = set()
        for index, names in by_host.items():
            pipe = layer.connection(index).pipeline(transaction=False)
            for name in names:
                pipe.zcount(layer._group_key(name), floor, "+inf")
            counts = await pipe.execute()
            listening.update(name for name, n in zip(names, counts, strict=True) if n)
        return listening
    except Exception:  # cannot look: send them all, as before the look existed
        logger.warning("could not look up group members; sending to all", exc_info=True)
        return groups


# Notices of one batch in flight at once: well under the channel layer's pool size.
SEND_CONCURRENCY = 32
_sender = _Sender()


def _send(group: str, message: dict[str, Any]) -> None:
    _sender.submit(group, message)


def flush(timeout: float = 5.0) -> None:
    _sender.flush(timeout)


def session_activated(session_id: str) -> None:
    _send(session_group(session_id), {"type": "session.activated", "session_id": session_id})


def session_closed(session_id: str, reason: str, note: str = "") -> None:
    _send(
        session_group(session_id),
        {"type": "session.closed", "session_id": session_id, "reason": reason, "note": note},
    )


def chat_frame(user_id: object, frame: dict[str, Any]) -> None:
    """A chat frame (`conversation.updated`, ...) to every open page of the person."""
    _send(user_group(user_id), {"type": "chat.frame", "frame": frame})


def queue_changed() -> None:
    """The queue moved (someone joined, left or was promoted): each process re-reads it once."""
    _send(QUEUE_GROUP, {"type": "queue.changed"})
    console_changed()


# Consoles redraw from a fresh read anyway, so a burst of changes needs one notice, not many.
CONSOLE_COALESCE_SECONDS = 0.1


def console_changed() -> None:
    _sender.submit_coalesced(CONSOLE_GROUP, {"type": "console.changed"}, CONSOLE_COALESCE_SECONDS)


def banner_changed(message: str) -> None:
    _send(QUEUE_GROUP, {"type": "banner.changed", "message": message})


def gate_changes(
    *,
    activated: list[str],
    closed: dict[str, str],
    note: str = "",
    queue_moved: bool = True,
    notes: dict[str, str] | None = None,
) -> None:
    """One batch of transitions: tell each person concerned, then every process once if
    queued people's places moved (else only the consoles, whose counts changed). `notes`
    gives a closed session its own note (the journal's batches mix them)."""
    notes = notes or {}
    sends: list[tuple[str, dict[str, Any]]] = [
        (session_group(sid), {"type": "session.activated", "session_id": sid}) for sid in activated
    ]
    sends += [
        (
            session_group(sid),
            {
                "type": "session.closed",
                "session_id": sid,
                "reason": reason,
                "note": notes.get(sid, note),
            },
        )
        for sid, reason in closed.items()
    ]
    if sends:
        _sender.submit_many(sends)
    if queue_moved:
        queue_changed()
    else:
        console_changed()
