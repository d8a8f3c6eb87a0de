"""Generation slots: one query at a time per seat, at most K across every process.

A generation holds one lease of the gate's slot semaphore (gate/lua/acquire_slot.lua) from the
first token requested to the last token sent; it waits its turn in ticket order, renews while
streaming, and always gives the slot back.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sessions_app import conf
from sessions_app.chat import handoff
from sessions_app.gate.admission import GateUnavailable, get_manager
from sessions_app.gate.services import NotActive
from sessions_app.gate.slots import SlotResult

__all__ = ["CapacityTimeout", "GenerationCut", "NotActive", "SlotLost", "generation_slot"]

# The holder stops a generation this much before its cap, so that it has ended (and its request
# to the model server is closed) before the gate may grant the slot again: covers the time
# between the grant in Redis and this process hearing of it.
CUT_MARGIN_SECONDS = 2.0


# The fallback poll of a waiter while the handoff channel is being heard (at most; see
# POLL_JITTER).
LISTENING_POLL_SECONDS = 0.5
# Each wait between polls is this share of the interval or more, drawn at random: waiters that
# began together (a burst of questions) would otherwise poll in step for minutes, and their
# polls would meet a burst of releases on the worker threads and in Redis. (In the handoff
# benchmark the first burst of handoffs was the slowest: issue 11, P6.)
POLL_JITTER = 0.5
# How late a waiter's next poll may come before the gate stops handing it a freed slot (its
# process may be gone); it then gets its slot when it asks, in its turn.
POLL_SLACK_SECONDS = 2.0


class CapacityTimeout(Exception):
    """No generation slot came free within the query wait limit."""


class SlotLost(Exception):
    """A generation's lease ran out before it could be renewed (the slot may serve another)."""


class GenerationCut(SlotLost):
    """A generation reached GENERATION_MAX_SECONDS and was stopped (its slot's hold ends)."""


@asynccontextmanager
async def generation_slot(
    *,
    session_id: str,
    on_wait: Callable[[int], Awaitable[None]] | None = None,
    timeout: float | None = None,
    poll_interval: float = 0.05,
) -> AsyncIterator[str]:
    """Holds one query slot for the body: waits its turn (FIFO), renews, always releases.

    Raises NotActive if the session is not active, CapacityTimeout after the query wait limit.
    `on_wait(place)` is awaited whenever the query's place among waiting queries changes.
    If the lease cannot be renewed before it runs out (Redis unreachable, or restarted and
    emptied), the slot may already serve someone else: the body is cancelled at once and
    SlotLost is raised, so that never more than the limit generate at the same time.
    """
    manager = get_manager()
    waiter_id = f"{session_id}:{uuid.uuid4().hex[:12]}"
    # Chosen before asking, so that a grant made while this task is being cancelled (or handed
    # to it by a release elsewhere) can still be released by its id.
    lease_id = uuid.uuid4().hex
    cap = max(0.0, float(conf.get("GENERATION_MAX_SECONDS")))
    loop = asyncio.get_running_loop()
    began = loop.time()
    last_place = -1
    # A freed slot is granted to the front waiter by the script that frees it, and this
    # process's listener wakes it (handoff.py); the poll stays as the fallback.
    wakeups = handoff.wakeups_for(manager)
    answered: SlotResult | None = None
    asking: asyncio.Future[SlotResult] | None = None
    ttl = 0.0
    try:
        while True:
            # While the push is heard, the poll only covers a missed message and the place shown
            # to those further back: polling less leaves the threads to the woken waiters.
            interval = poll_interval
            if wakeups.listening:
                interval = max(poll_interval, LISTENING_POLL_SECONDS)
            if answered is not None:
                result = answered  # handed over and pushed to us
            else:
                # Kept apart from this task: a cancel cannot stop a script already sent, and the
                # give-back below must come after it, or the late poll would queue this waiter
                # again (or be granted a slot) after its release.
                asking = asyncio.ensure_future(
                    asyncio.to_thread(
                        manager.acquire_slot,
                        session_id,
                        waiter_id=waiter_id,
                        lease_id=lease_id,
                        hold_seconds=cap,
                        poll_within=interval + POLL_SLACK_SECONDS,
                    )
                )
                result = await asyncio.shield(asking)
            ttl = result.lease_ttl or ttl  # a pushed grant carries no limits; a poll came first
            if result.outcome == "granted":
                break
            if result.outcome == "not_active":
                raise NotActive(session_id)
            if on_wait is not None and result.place != last_place:
                last_place = result.place
                await on_wait(result.place)
            if loop.time() >= began + (timeout if timeout is not None else result.wait_limit):
                raise CapacityTimeout(session_id)
            # A pushed grant's generation hold is taken by the listener (handoff.py).
            pause = interval * random.uniform(POLL_JITTER, 1.0)
            answered = await wakeups.wait(pause, waiter_id=waiter_id, hold=cap)
    except BaseException:

        async def give_back() -> None:
            if asking is not None:
                await asyncio.wait({asking})  # its outcome no longer matters, only its end
            # Withdraws the waiting query and gives back a grant it may have been handed.
            await asyncio.to_thread(
                manager.release_slot, session_id, lease_id=lease_id, waiter_id=waiter_id
            )

        await asyncio.shield(give_back())
        raise

    body = asyncio.current_task()
    lost = asyncio.Event()

    async def keep_renewing() -> None:
        expires_at = loop.time() + ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                renewed = await asyncio.to_thread(manager.renew_slot, lease_id)
            except GateUnavailable:
                # A passing Redis fault: try again while the lease has a renewal left in it.
                renewed = None
            if renewed:
                expires_at = loop.time() + ttl
            elif renewed is False or loop.time() + ttl / 3 >= expires_at:
                lost.set()
                if body is not None:
                    body.cancel()  # stop generating: the slot may already serve another
                return

    cut = asyncio.Event()

    async def cut_at_cap() -> None:
        # A generation never outlives its hold: the gate grants this slot again at grant +
        # cap even if this process froze, so it must have stopped by then (issue 8, item 9).
        await asyncio.sleep(max(cap - min(CUT_MARGIN_SECONDS, cap / 10), 0.0))
        cut.set()
        if body is not None:
            body.cancel()

    renewer = asyncio.create_task(keep_renewing())
    cutter = asyncio.create_task(cut_at_cap()) if cap > 0 else None
    try:
        yield lease_id
    except asyncio.CancelledError:
        if cut.is_set() and body is not None:
            body.uncancel()
            raise GenerationCut(lease_id) from None
        if lost.is_set() and body is not None:
            body.uncancel()
            raise SlotLost(lease_id) from None
        raise
    finally:
        renewer.cancel()
        if cutter is not None:
            cutter.cancel()
        # Shielded: a cancelled generation (Stop, disconnect) must still give its slot back.
        await asyncio.shield(asyncio.to_thread(manager.release_slot, session_id, lease_id=lease_id))
    if lost.is_set():
        raise SlotLost(lease_id)
