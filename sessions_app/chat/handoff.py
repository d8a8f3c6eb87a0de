"""Slot handoff: wakes this process's waiting queries the moment a generation slot is freed.

release_slot.lua PUBLISHes on the `slotfree` channel (keys.py) whenever it frees a lease or
withdraws a waiting query, in whichever process that happens. One listener thread per process
and Redis client hears it and wakes the local waiters at the front of the line, which ask again
at once instead of on their next poll (issue 11: the poll alone made a handoff cost 30-40 ms).

The push is only an acceleration. Who gets a slot is still decided by acquire_slot.lua alone
(FIFO, the global limit), and every waiter keeps polling as before, so a missed message (the
listener reconnecting, a slot reclaimed by expiry, which publishes nothing) costs at most one
poll interval, never a place in line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref

import redis

from sessions_app.gate.admission import AdmissionManager

logger = logging.getLogger(__name__)

# Only waiters this near the front are woken: one freed slot can go to place 1 only, and waking
# hundreds of waiters per release would run hundreds of scripts for nothing. Those further back
# learn their new place from their poll. 10 = the default global generation limit.
WAKE_PLACES = 10


class SlotWakeups:
    """The waiters of one process on one Redis, and the thread that wakes them."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel
        self._lock = threading.Lock()
        self._waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}
        # Bumped on every wake-up: a waiter that saw no wake-up between reading it (before its
        # acquire call) and waiting can sleep; one that did asks again at once. This closes the
        # gap between "asked and told to wait" and "registered to be woken".
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

    async def wait(self, timeout: float, *, since: int, place: int) -> None:
        """Sleeps up to `timeout`, less if a slot is freed (and this waiter is near the front)."""
        if place > WAKE_PLACES:
            await asyncio.sleep(timeout)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.epoch != since:
                return  # freed while we were asking: ask again now
            self._waiters[future] = loop
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            with self._lock:
                self._waiters.pop(future, None)

    def wake(self) -> None:
        """A slot was freed somewhere: every registered waiter asks again (thread-safe)."""
        with self._lock:
            self.epoch += 1
            waiters = list(self._waiters.items())
            self._waiters.clear()
        for future, loop in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _listen(ref: weakref.ReferenceType[SlotWakeups]) -> None:
    """The listener thread: subscribes, wakes on each message, reconnects after a fault, and
    ends once its SlotWakeups is gone (a test's manager replaced)."""
    while (me := ref()) is not None:
        pubsub = me.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(me.channel)
            me._listening.set()
            # A message may have been published while we were not subscribed: wake anyway.
            me.wake()
            del me
            while (me := ref()) is not None:
                if pubsub.get_message(timeout=1.0) is not None:
                    me.wake()
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
            wakeups = SlotWakeups(manager.client, manager.keys.slot_free)
            _by_manager[manager] = wakeups
    wakeups.start()
    return wakeups
