"""Position fan-out for one server process: its own queued sockets, told their absolute place.

Each process keeps a registry of its chat sockets. The registry (not each socket) is the one
member of `notifications.QUEUE_GROUP` for the process, so a queue change costs one channel-layer
message per process. On that message it reads the queue order once (one ZRANGE), and writes each
of its sockets whose place (or rounded estimate) changed a fresh absolute `queue.status` frame,
directly, without the channel layer. Updates are coalesced per person: a page told its place less
than FLUSH_MIN_INTERVAL ago is skipped and told its then-current place when the interval is up,
so nobody gets more than about one position update a second however fast the queue churns,
while a change after a quiet spell goes out at once (DESIGN.md §3). Changes that arrive while a
flush is running fold into the next flush, so a burst costs one or two reads, not one per change.

Every frame carries a version from one per-process counter taken *before* its read, and a socket
is never sent a version older than the last one it got, so a slow read can never overwrite a
fresher number. A lost message is healed by the next flush; a periodic flush (every presence
tick) heals even a lost queue.changed or a Redis restart that dropped the group membership.

The same ticker keeps presence (one batched `touch_many` call for all live sessions every
PRESENCE_HEARTBEAT_SECONDS while a page is open; a killed process simply stops touching, so its
people are abandoned after the grace period) and sends `session.expiring` warnings before the
idle timeout.

`FANOUT_MODE=plain` (environment) turns the registry off and makes every socket a member of the
queue group that re-reads its own position on each change: the naive broadcast, kept only so
that bench/fanout_bench.py can measure both in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import math
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from sessions_app import gctune, notifications
from sessions_app.gate import eta, selectors, services
from sessions_app.gate.admission import GateUnavailable, get_manager

logger = logging.getLogger(__name__)

# At most one position update a second per person ...
FLUSH_MIN_INTERVAL = 1.0
# ... give or take this much, so that deferred updates go out together rather than one by one.
FLUSH_SLACK = 0.2
# An estimate that changed while the place did not is news, but not urgent news: the rounded
# minutes drift as the observed departure rate moves, and must not crowd out place changes.
ETA_ONLY_INTERVAL = 15.0
# Presence touches and the periodic healing flush.
PRESENCE_SECONDS = float(selectors.PRESENCE_HEARTBEAT_SECONDS)
# How often active sessions are checked for an approaching idle timeout.
EXPIRY_CHECK_SECONDS = 5.0
# Warn this long before the idle timeout (a quarter of the timeout when that is shorter).
EXPIRY_WARNING_SECONDS = 120.0
# Let other tasks run (incoming frames, chat streams) every this many sends of a big flush.
SENDS_PER_YIELD = 100


def fanout_mode() -> str:
    return os.environ.get("FANOUT_MODE", "registry")


# Versions start from the wall clock in ms so that they keep growing across process restarts
# (a page resets its own high-water mark on reconnect anyway).
_versions = itertools.count(int(time.time() * 1000))


def next_version() -> int:
    return next(_versions)


def eta_minutes(seconds: int | None) -> int | None:
    """What the banner shows ("about 4 minutes"): a new estimate is news only if this changes."""
    return None if seconds is None else max(1, math.ceil(seconds / 60))


class Socket(Protocol):
    """What the registry needs of a chat consumer."""

    session_id: str

    async def send_frame(self, frame: dict[str, Any]) -> None: ...

    async def send_encoded(self, text: str) -> None: ...


@dataclass(slots=True)  # one per open page: no per-instance __dict__ (P4)
class Entry:
    session_id: str
    version: int = -1  # the newest version this socket was sent
    state: str = ""  # what it was last told: "queued" | "active" | "closed" | "none" | ""
    position: int = 0
    eta_minutes: int | None = None
    paused: bool = False  # admissions were paused when it was last told
    warned_deadline: float = 0.0  # the idle deadline it was last warned about
    sent_at: float = -1e9  # loop time of the last status frame
    moved_at: float = -1e9  # loop time of the last frame that changed its place or state


def status_frame(status: selectors.SessionStatus, version: int) -> dict[str, Any]:
    return {"type": "queue.status", **status.as_dict(), "version": version}


_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) quotes with


def queued_text(
    session_id: str, place: int, eta_seconds: int | None, paused: bool, version: int
) -> str:
    """`status_frame` of a queued person, as JSON text, built directly: a big round writes one
    per waiting page, and building the status, its dict and json.dumps cost several times this
    (tests/test_fanout_frames.py holds it equal to `status_frame`)."""
    return (
        f'{{"type":"queue.status","state":"queued","session_id":{_quote(session_id)},'
        f'"position":{place},"ahead":{place - 1},'
        f'"eta_seconds":{"null" if eta_seconds is None else eta_seconds},'
        f'"paused":{"true" if paused else "false"},"version":{version}}}'
    )


def _db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Blocking Redis/ORM work off the event loop, on a pool thread (not the one shared
    thread), so a big presence sweep never delays another socket's database call."""
    return database_sync_to_async(fn, thread_sensitive=False)  # type: ignore[no-any-return]


def _read_queue() -> tuple[list[str], float, bool]:
    return get_manager().queue_order(), selectors.departure_rate(), selectors.admissions_paused()


def _read_deadlines() -> tuple[dict[str, float], float, float]:
    manager = get_manager()
    timeout = float(manager.config().get("idle_timeout_seconds", 1800))
    return selectors.session_idle_deadlines(), manager.server_time(), timeout


def _touch_all(session_ids: list[str]) -> None:
    # One script call per batch for all of this process's pages, not one per page (issue 11:
    # one call per page cost 8-15% of a core at 5,000-10,000 waiting).
    try:
        services.sessions_touch_presence(session_ids)
    except GateUnavailable:
        return  # Redis is down: nobody can be abandoned meanwhile either
    except Exception:
        logger.exception("presence touch failed for %d sessions", len(session_ids))


class Registry:
    """The sockets of this process (one registry per event loop)."""

    def __init__(self) -> None:
        self.entries: dict[Socket, Entry] = {}
        self.dirty = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        # Expiry checks run at least twice within the warning window (short idle timeouts).
        self.check_every = EXPIRY_CHECK_SECONDS
        self.flushes = 0  # counters, for tests and the benchmark
        self.frames_sent = 0

    # --- membership -----------------------------------------------------------------------

    def add(self, sock: Socket) -> Entry:
        entry = Entry(session_id=sock.session_id)
        self.entries[sock] = entry
        if not self.tasks:
            self.tasks = [
                asyncio.create_task(self._listen(), name="fanout-listen"),
                asyncio.create_task(self._flusher(), name="fanout-flush"),
                asyncio.create_task(self._ticker(), name="fanout-tick"),
            ]
        return entry

    def discard(self, sock: Socket) -> None:
        self.entries.pop(sock, None)
        if not self.entries and self.tasks:
            for task in self.tasks:
                task.cancel()
            self.tasks = []

    def entry(self, sock: Socket) -> Entry | None:
        return self.entries.get(sock)

    # --- sending ----------------------------------------------------------------------------

    def _note(
        self,
        entry: Entry | None,
        state: str,
        position: int,
        eta_seconds: int | None,
        paused: bool,
        version: int,
        now: float | None = None,
    ) -> bool:
        """Records what a socket is about to be told; False if it already holds a newer
        version (the frame must not be sent). A flush passes its own `now`: reading the loop's
        clock per frame was ~4% of a big round."""
        if entry is not None:
            if version < entry.version:
                return False
            if now is None:
                now = asyncio.get_running_loop().time()
            if entry.state != state or entry.position != position:
                entry.moved_at = now
            entry.version = version
            entry.state = state
            entry.position = position
            entry.eta_minutes = eta_minutes(eta_seconds)
            entry.paused = paused
            entry.sent_at = now
        self.frames_sent += 1
        return True

    async def send_status(
        self, sock: Socket, status: selectors.SessionStatus, version: int
    ) -> bool:
        """Sends `status` unless the socket already holds a newer version."""
        entry = self.entries.get(sock)
        if not self._note(
            entry, status.state, status.position, status.eta_seconds, status.paused, version
        ):
            return False
        await sock.send_frame(status_frame(status, version))
        return True

    async def refresh(self, sock: Socket) -> None:
        """One socket's status, read now (connect, heartbeat, or it left the queue)."""
        version = next_version()
        status = await _db(selectors.session_status)(sock.session_id)
        await self.send_status(sock, status, version)

    async def broadcast(self, frame: dict[str, Any]) -> None:
        for count, sock in enumerate(list(self.entries), start=1):
            await sock.send_frame(frame)
            if count % SENDS_PER_YIELD == 0:
                await asyncio.sleep(0)

    # --- the fan-out ------------------------------------------------------------------------

    async def flush(self) -> int:
        """Reads the queue once; tells each socket whose place changed. Returns frames sent.

        Sockets whose place changed less than FLUSH_MIN_INTERVAL ago wait for a later flush,
        scheduled for when the first of them is due; an estimate-only change goes out at most
        every ETA_ONLY_INTERVAL and does not hold back the next change of place."""
        if not self.entries:
            return 0
        loop = asyncio.get_running_loop()
        now = loop.time()
        not_before = now - FLUSH_MIN_INTERVAL + FLUSH_SLACK
        deferred_until: float | None = None
        started = time.perf_counter()
        version = next_version()
        order, rate, paused = await _db(_read_queue)()
        read_ms = (time.perf_counter() - started) * 1000
        self.flushes += 1
        places = {session_id: place for place, session_id in enumerate(order, start=1)}
        sent = 0
        left_queue: list[Socket] = []
        due_now: list[tuple[int, Socket]] = []
        for sock, entry in list(self.entries.items()):
            place = places.get(entry.session_id)
            if place is None:
                if entry.state in ("queued", ""):
                    left_queue.append(sock)  # promoted or closed: read it alone (rare)
                continue
            if entry.state == "queued" and entry.position == place and entry.paused == paused:
                if entry.eta_minutes == eta_minutes(eta.eta_seconds(place, rate)):
                    continue
                if entry.sent_at > now - ETA_ONLY_INTERVAL:
                    continue  # the periodic healing flush brings it later
            if entry.moved_at > not_before:
                due = entry.moved_at + FLUSH_MIN_INTERVAL
                deferred_until = due if deferred_until is None else min(deferred_until, due)
                continue
            due_now.append((place, sock))
        # Whoever left the queue first (the promoted page learns it is its turn at once), then
        # the queue from its head: the people closest to their turn hear first.
        for sock in left_queue:
            if sock in self.entries:
                await self.refresh(sock)
                sent += 1
                promoted = self.entries.get(sock)
                if promoted is not None and promoted.state == "active":
                    # Promoted: say so now, whichever of this and the session group's
                    # `session.activated` comes first (the consumer skips a repeat).
                    await sock.send_frame(
                        {"type": "session.activated", "session_id": promoted.session_id}
                    )
        due_now.sort(key=lambda item: item[0])
        sent_at = loop.time()  # read again after every yield: close enough to each send
        for place, sock in due_now:
            waiting = self.entries.get(sock)
            if waiting is None:
                continue  # disconnected meanwhile
            eta_s = eta.eta_seconds(place, rate)
            if self._note(waiting, "queued", place, eta_s, paused, version, sent_at):
                # Encoded here and handed to daphne directly (consumers/base.py,
                # `send_encoded`): this loop is the whole cost of a big round.
                await sock.send_encoded(
                    queued_text(waiting.session_id, place, eta_s, paused, version)
                )
                sent += 1
                if sent % SENDS_PER_YIELD == 0:
                    await asyncio.sleep(0)  # let incoming frames and chat streams through
                    sent_at = loop.time()
        if deferred_until is not None:
            loop.call_at(deferred_until + FLUSH_SLACK / 2, self.dirty.set)
        logger.debug(
            "fan-out: %d queued, %d frames%s; read %.1f ms, total %.1f ms; full gc so far %d",
            len(order),
            sent,
            " (some deferred)" if deferred_until is not None else "",
            read_ms,
            (time.perf_counter() - started) * 1000,
            gc.get_stats()[2]["collections"],  # the benchmark checks none ran in a round
        )
        return sent

    async def _flusher(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                with gctune.paused():  # no full collection in the middle of a round
                    await self.flush()
            except GateUnavailable:
                logger.warning("fan-out: Redis unreachable; positions resume when it returns")
                await asyncio.sleep(1.0)
            except Exception:
                logger.exception("fan-out flush failed")
                await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        # The default prefix matters: channels-redis pops one process-wide list per prefix,
        # so a custom prefix would starve every consumer of this process while we wait.
        channel = await layer.new_channel()
        try:
            await layer.group_add(notifications.QUEUE_GROUP, channel)
            self._channel = channel
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("fan-out: channel layer unreachable", exc_info=True)
                    await asyncio.sleep(1.0)
                    continue
                kind = message.get("type")
                if kind == "queue.changed":
                    self.dirty.set()
                elif kind == "banner.changed":
                    await self.broadcast(
                        {"type": "banner.changed", "message": message.get("message", "")}
                    )
        finally:
            with contextlib.suppress(Exception):  # the membership expires by itself
                await asyncio.shield(layer.group_discard(notifications.QUEUE_GROUP, channel))

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        last_presence = loop.time()
        while True:
            await asyncio.sleep(self.check_every)
            try:
                gctune.settle(len(self.entries))  # between rounds: freeze after a burst
                if loop.time() - last_presence >= PRESENCE_SECONDS:
                    last_presence = loop.time()
                    await self.keep_present()
                await self.warn_expiring()
            except GateUnavailable:
                continue
            except Exception:
                logger.exception("fan-out tick failed")

    async def keep_present(self) -> None:
        """Presence for every live session with a socket here; then heal by a full flush."""
        ids = sorted({e.session_id for e in self.entries.values() if e.state != "closed"})
        await _db(_touch_all)(ids)
        layer = get_channel_layer()
        channel = getattr(self, "_channel", None)
        if layer is not None and channel:
            # Re-joining is cheap and survives a Redis restart that lost the group.
            await layer.group_add(notifications.QUEUE_GROUP, channel)
        self.dirty.set()

    async def warn_expiring(self) -> None:
        """`session.expiring` once per idle deadline; a session past it is ended by its touch."""
        if not any(e.state == "active" for e in self.entries.values()):
            return
        deadlines, now, timeout = await _db(_read_deadlines)()
        window = min(EXPIRY_WARNING_SECONDS, timeout / 4)
        self.check_every = max(0.5, min(EXPIRY_CHECK_SECONDS, window / 2))
        due: set[str] = set()
        for sock, entry in list(self.entries.items()):
            deadline = deadlines.get(entry.session_id)
            if deadline is None or entry.state != "active":
                continue
            left = deadline - now
            if left <= 0:
                due.add(entry.session_id)
            elif left <= window and entry.warned_deadline != deadline:
                entry.warned_deadline = deadline
                await sock.send_frame({"type": "session.expiring", "seconds_left": int(left)})
        if due:
            await _db(_touch_all)(sorted(due))


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Registry] = (
    weakref.WeakKeyDictionary()
)


def get_registry() -> Registry:
    """This process's registry (one per event loop: daphne runs one; tests run many)."""
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = Registry()
    return registry
