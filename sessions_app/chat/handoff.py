"""Slot handoff: a freed generation slot reaches the next waiting question at once.

The script that frees a slot (release_slot.lua; the sweep, for a lease nobody renewed) grants it
in the same call to the waiting query that would get it by asking (hand_over, gate/lua/_lib.lua)
and publishes the grant on the handoff channel (gate/slots.py). One listener thread per process
and Redis client hears it and wakes that waiter if it waits in this process: one hop to its
event loop, and no script call of its own. (Before, the listener ran acquire_slot.lua for the
local waiters on every release, and a waiter whose ask crossed a release asked again itself: in
a burst of ten releases those calls queued behind one another in the worker threads; issue 11,
P6.)

Who gets a slot is decided by the Lua scripts alone, in ticket order. The push only wakes the
waiter: a missed message (the listener reconnecting) costs at most one poll, because the waiter's
next acquire_slot.lua call answers "granted" for a lease handed to it. A waiter that is
cancelled gives its lease back by id, granted or not (generation.py). A handed-over lease has
no generation hold until the process that heard of it takes it, after waking the waiter (once
the burst of releases is over, at most HOLD_DEFER_MAX_SECONDS later); so one handed to a process
that died holds its slot for one lease TTL at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import redis

from sessions_app.gate.admission import AdmissionManager
from sessions_app.gate.slots import SlotResult, parse_grants

logger = logging.getLogger(__name__)

# Grants heard before their waiter started waiting (its poll's answer "wait" crossed the grant):
# kept for it, the latest this many (the others are other processes' waiters).
EARLY_GRANTS_KEPT = 1024
# The woken waiters' generation holds are taken once the handoff channel has been quiet this
# long, or once the oldest has waited HOLD_DEFER_MAX_SECONDS: a burst of releases (answers that
# end together) sends one message each, and their holds become one round trip after the
# burst instead of one per grant among the woken questions' starts. (Measured, the handoff's
# p99 was no better for it, 4 of 6 runs under 50 ms either way: what cost the tail were polls
# in step, generation.py. It saves nine round trips a burst.)
HOLD_QUIET_SECONDS = 0.02
HOLD_DEFER_MAX_SECONDS = 0.25


class SlotWakeups:
    """The waiting queries of one process on one Redis, and the thread that wakes them."""

    def __init__(self, manager: AdmissionManager) -> None:
        self._manager = weakref.ref(manager)
        self.client = manager.client
        self.channel = manager.keys.slot_free
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiting] = {}
        self._early: OrderedDict[str, SlotResult] = OrderedDict()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        # Holds of woken waiters still to take, and since when (under _lock).
        self._holds: list[tuple[str, float]] = []
        self._holds_since = 0.0

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

    async def wait(self, timeout: float, *, waiter_id: str, hold: float = 0.0) -> SlotResult | None:
        """Sleeps up to `timeout`, less if a slot is handed to this waiter: then its grant, whose
        generation `hold` (seconds) the listener takes in Redis within HOLD_DEFER_MAX_SECONDS
        (see `granted`). None: the caller asks (polls) itself."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(loop.create_future(), loop, hold)
        with self._lock:
            early = self._early.pop(waiter_id, None)
            if early is None:
                self._waiting[waiter_id] = waiting
        if early is not None:
            if hold > 0:  # rare (the grant crossed this waiter's poll): one round trip here
                await asyncio.to_thread(self._take, [(early.lease_id, hold)])
            return early
        try:
            await asyncio.wait({waiting.future}, timeout=timeout)
        finally:
            with self._lock:
                if self._waiting.get(waiter_id) is waiting:
                    del self._waiting[waiter_id]
        # Not woken in time (or woken a moment too late): the poll finds a handed-over lease.
        future = waiting.future
        return future.result() if future.done() and not future.cancelled() else None

    def granted(self, grants: dict[str, SlotResult]) -> None:
        """Wakes the local waiters of these grants and notes their generation holds, which the
        listener takes after the burst (`take_due_holds`): the waiters start at once, and no thread
        of their event loop spends a round trip on a hold (through a worker thread, that cost
        the handoff's p99: 47-55 ms against 25-50; issue 11, P6)."""
        for waiter_id, result in grants.items():
            with self._lock:
                waiting = self._waiting.pop(waiter_id, None)
                if waiting is None:
                    self._early[waiter_id] = result
                    while len(self._early) > EARLY_GRANTS_KEPT:
                        self._early.popitem(last=False)
                    continue
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits there
                waiting.loop.call_soon_threadsafe(_resolve, waiting.future, result)
                if waiting.hold > 0:
                    with self._lock:
                        if not self._holds:
                            self._holds_since = time.monotonic()
                        self._holds.append((result.lease_id, waiting.hold))

    def next_listen_timeout(self) -> float:
        """How long the listener may wait for the next message: with holds to take, until the
        channel has been quiet long enough or the oldest is due."""
        with self._lock:
            if not self._holds:
                return 1.0
            due = self._holds_since + HOLD_DEFER_MAX_SECONDS - time.monotonic()
        return max(0.0, min(HOLD_QUIET_SECONDS, due))

    def take_due_holds(self, *, quiet: bool) -> None:
        """Takes the noted holds in one round trip if `quiet` (no grant came within
        HOLD_QUIET_SECONDS, or the listener is reconnecting; an ignored subscribe reply counts
        too, which only takes them early) or once the oldest is due."""
        with self._lock:
            if not self._holds:
                return
            if not quiet and time.monotonic() < self._holds_since + HOLD_DEFER_MAX_SECONDS:
                return
            holds, self._holds = self._holds, []
        self._take(holds)

    def _take(self, holds: list[tuple[str, float]]) -> None:
        """Handed-over leases' generation holds (lease id, seconds); a failure leaves them to
        the renewer."""
        manager = self._manager()
        if manager is None:
            return
        try:
            manager.take_holds(holds)
        except Exception:
            logger.warning("slot handoff: taking a handed-over lease's hold failed", exc_info=True)


@dataclass(eq=False)
class _Waiting:
    future: asyncio.Future[SlotResult]
    loop: asyncio.AbstractEventLoop
    hold: float


def _resolve(future: asyncio.Future[SlotResult], value: SlotResult) -> None:
    if not future.done():
        future.set_result(value)


def _listen(ref: weakref.ReferenceType[SlotWakeups]) -> None:
    """The listener thread: subscribes, wakes the waiters of each grant heard, reconnects after a
    fault, and ends once its SlotWakeups is gone (a test's manager replaced)."""
    while (me := ref()) is not None:
        pubsub = me.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(me.channel)
            me._listening.set()
            del me
            while (me := ref()) is not None:
                message = pubsub.get_message(timeout=me.next_listen_timeout())
                if message is not None:
                    try:
                        me.granted(parse_grants(message["data"]))
                    except Exception:  # a bad message must not end the listener
                        logger.warning("slot handoff: ignored a message that is not grants")
                me.take_due_holds(quiet=message is None)
                del me
        except (redis.exceptions.RedisError, OSError):
            logger.debug("slot handoff listener lost Redis; polling covers it", exc_info=True)
            if (me := ref()) is not None:
                me._listening.clear()
                me.take_due_holds(quiet=True)  # not after the reconnect's pause
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
