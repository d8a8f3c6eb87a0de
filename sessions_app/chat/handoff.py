"""Slot handoff: a freed generation slot is asked for, for this process's front waiter, the
moment it is freed.

release_slot.lua PUBLISHes on the `slotfree` channel (keys.py) whenever it frees a lease or
withdraws a waiting query, in whichever process that happens. One listener thread per process
and Redis client hears it and runs acquire_slot.lua itself for the local waiters in the order
they stand (nearest the front first), until one is told to wait: a grant reaches its waiter
with one hop to its event loop, and one release costs each process one or two script calls.
(Before, every waiter near the front was woken to ask for itself: ten scripts per release, each
through a worker thread, crowding the granted waiter's own start; issue 11, P6.)

The push is only an acceleration. Who gets a slot is still decided by acquire_slot.lua alone
(FIFO, the global limit), and every waiter keeps polling as before, so a missed message (the
listener reconnecting, a slot reclaimed by expiry, which publishes nothing) costs at most one
poll interval, never a place in line.

One rule keeps a grant from being lost: a waiter the listener is asking for is never asked for
by anyone else, and is not released until that ask has returned (`SlotAsk.settled`), since
acquire_slot.lua would queue a released waiter again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from dataclasses import dataclass, field

import redis

from sessions_app.gate.admission import AdmissionManager, GateUnavailable, SlotResult

logger = logging.getLogger(__name__)

# Only waiters this near the front are registered: one freed slot can go to place 1 only.
# Those further back learn their new place from their poll. 10 = the default global limit.
WAKE_PLACES = 10


@dataclass(eq=False)
class SlotAsk:
    """One waiting query, as the listener needs it to ask acquire_slot.lua on its behalf."""

    session_id: str
    waiter_id: str
    lease_id: str
    hold_seconds: float
    # Set while no ask by the listener is in flight for this query.
    settled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.settled.set()


@dataclass(eq=False)
class _Entry:
    ask: SlotAsk
    place: int
    future: asyncio.Future[tuple[SlotResult, int] | None]
    loop: asyncio.AbstractEventLoop
    claimed: bool = False  # the listener is asking for it (under SlotWakeups._lock)


class SlotWakeups:
    """The waiters of one process on one Redis, and the thread that asks for them."""

    def __init__(self, manager: AdmissionManager) -> None:
        self._manager = weakref.ref(manager)
        self.client = manager.client
        self.channel = manager.keys.slot_free
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        # Bumped on every release heard: a waiter that saw none between reading it (before its
        # acquire call) and registering can sleep; one that did asks again at once. This closes
        # the gap between "asked and told to wait" and "registered".
        self.epoch = 0
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=_listen, args=(weakref.ref(self),), name="slot-handoff", daemon=True
            )
            self._thread.start()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def wait(
        self, timeout: float, *, since: int, place: int, ask: SlotAsk
    ) -> tuple[SlotResult, int] | None:
        """Sleeps up to `timeout`, less if a slot is freed (and this waiter is near the front).

        Returns (the listener's answer for this query, the epoch it was asked at), or None:
        then the caller asks for itself."""
        if place > WAKE_PLACES:
            await asyncio.sleep(timeout)
            return None
        loop = asyncio.get_running_loop()
        entry = _Entry(ask, place, loop.create_future(), loop)
        with self._lock:
            if self.epoch != since:
                return None  # freed while we were asking: ask again now
            self._entries.append(entry)
        try:
            await asyncio.wait({entry.future}, timeout=timeout)
        finally:
            claimed = self._withdraw(entry)
        if not claimed:
            return None  # only the listener resolves the future, and only what it claimed
        # The listener asked for us, or is asking right now: its answer may be a grant, which
        # must not be lost (asking again ourselves would queue us again behind our own lease).
        return await entry.future

    def _withdraw(self, entry: _Entry) -> bool:
        """Takes the entry out of the listener's reach; True if an ask for it is in flight or
        answered (the listener always resolves the future then)."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._entries.remove(entry)
            return entry.claimed

    def released(self) -> None:
        """A slot was freed somewhere: ask for the local waiters, front first (listener thread)."""
        with self._lock:
            self.epoch += 1
            epoch = self.epoch
            queue = sorted(self._entries, key=lambda e: e.place)
        for entry in queue:
            if not self._claim(entry):
                continue  # gone (timed out, cancelled) since the snapshot
            result = self._ask(entry.ask)
            self._answer(entry, None if result is None else (result, epoch))
            if result is None:
                return  # Redis failed: the waiters' own polls cover it
            if result.outcome == "wait" and not result.blocked_by_own_session:
                return  # no slot for this one, so none for those behind it either

    def _claim(self, entry: _Entry) -> bool:
        with self._lock:
            if entry not in self._entries:
                return False
            self._entries.remove(entry)
            entry.claimed = True
            entry.ask.settled.clear()
            return True

    def _ask(self, ask: SlotAsk) -> SlotResult | None:
        manager = self._manager()
        if manager is None:
            return None
        try:
            return manager.acquire_slot(
                ask.session_id,
                waiter_id=ask.waiter_id,
                lease_id=ask.lease_id,
                hold_seconds=ask.hold_seconds,
            )
        except GateUnavailable:
            return None
        except Exception:
            # Whatever went wrong, the waiter must hear back (it waits for this answer).
            logger.exception("slot handoff: asking for a waiting query failed")
            return None

    @staticmethod
    def _answer(entry: _Entry, value: tuple[SlotResult, int] | None) -> None:
        try:
            entry.loop.call_soon_threadsafe(_resolve, entry.future, value)
        except RuntimeError:
            pass  # the loop is closed: nobody waits there any more
        finally:
            entry.ask.settled.set()


def _resolve(
    future: asyncio.Future[tuple[SlotResult, int] | None], value: tuple[SlotResult, int] | None
) -> None:
    if not future.done():
        future.set_result(value)


def release_after_ask(manager: AdmissionManager, ask: SlotAsk) -> bool:
    """Gives a query's slot or place back once no ask by the listener is in flight for it (a
    grant made by that ask is then released too). Runs in a worker thread."""
    # Bounded: an ask is one script call; past the socket timeout it has failed anyway.
    ask.settled.wait(timeout=30.0)
    return manager.release_slot(ask.session_id, lease_id=ask.lease_id, waiter_id=ask.waiter_id)


def _listen(ref: weakref.ReferenceType[SlotWakeups]) -> None:
    """The listener thread: subscribes, asks on each message, reconnects after a fault, and
    ends once its SlotWakeups is gone (a test's manager replaced)."""
    while (me := ref()) is not None:
        pubsub = me.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(me.channel)
            me._listening.set()
            # A slot may have been freed while we were not subscribed: ask anyway.
            me.released()
            del me
            while (me := ref()) is not None:
                if pubsub.get_message(timeout=1.0) is not None:
                    me.released()
                del me
        except (redis.exceptions.RedisError, OSError):
            logger.debug("slot handoff listener lost Redis; polling covers it", exc_info=True)
            if (me := ref()) is not None:
                me._listening.clear()
                del me
            threading.Event().wait(1.0)
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection
                pubsub.close()


_by_manager: weakref.WeakKeyDictionary[AdmissionManager, SlotWakeups] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def wakeups_for(manager: AdmissionManager) -> SlotWakeups:
    """The process's wake-ups for this manager's Redis, listening from the first call on."""
    with _registry_lock:
        wakeups = _by_manager.get(manager)
        if wakeups is None:
            wakeups = SlotWakeups(manager)
            _by_manager[manager] = wakeups
    wakeups.start()
    return wakeups
