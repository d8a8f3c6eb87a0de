"""Generation slots: one query at a time per seat, at most K across every process.

A generation holds one lease of the gate's slot semaphore (gate/lua/acquire_slot.lua) from the
first token requested to the last token sent; it waits its turn in ticket order, renews while
streaming, and always gives the slot back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sessions_app import conf
from sessions_app.chat import handoff
from sessions_app.gate.admission import GateUnavailable, SlotResult, get_manager
from sessions_app.gate.services import NotActive

__all__ = ["CapacityTimeout", "GenerationCut", "NotActive", "SlotLost", "generation_slot"]

# The holder stops a generation this much before its cap, so that it has ended (and its request
# to the model server is closed) before the gate may grant the slot again: covers the time
# between the grant in Redis and this process hearing of it.
CUT_MARGIN_SECONDS = 2.0


# The fallback poll of a waiter near the front while the slot-free push is being heard.
LISTENING_POLL_SECONDS = 0.25


class CapacityTimeout(Exception):
    """No generation slot came free within the query wait limit."""


class SlotLost(Exception):
    """A generation's lease ran out before it could be renewed (the slot may serve another)."""


class GenerationCut(SlotLost):
    """A generation reached GENERATION_MAX_SECONDS and was stopped (its slot's hold ends)."""


def _slot_timings() -> tuple[float, float]:
    """(query wait limit, lease TTL) in seconds, from one read of the live limits."""
    live = get_manager().config()
    wait = live.get("query_wait_timeout_seconds") or conf.get("QUERY_WAIT_TIMEOUT_SECONDS")
    ttl = live.get("lease_ttl_seconds") or conf.get("LEASE_TTL_SECONDS")
    return float(wait), float(ttl)


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
    # Chosen before asking, so that a grant made while this task is being cancelled can still
    # be released by its id (else the slot would be held for a whole lease TTL).
    lease_id = uuid.uuid4().hex
    wait_limit, ttl = await asyncio.to_thread(_slot_timings)
    cap = max(0.0, float(conf.get("GENERATION_MAX_SECONDS")))
    limit = timeout if timeout is not None else wait_limit
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + limit
    last_place = -1
    # A freed slot is asked for on this waiter's behalf at once (handoff.py); the poll stays
    # as the fallback.
    wakeups = handoff.wakeups_for(manager)
    ask = handoff.SlotAsk(session_id, waiter_id, lease_id, cap)
    answered: tuple[SlotResult, int] | None = None
    try:
        while True:
            if answered is not None:
                result, epoch = answered  # the listener asked for us
            else:
                epoch = wakeups.epoch
                result = await asyncio.to_thread(
                    manager.acquire_slot,
                    session_id,
                    waiter_id=waiter_id,
                    lease_id=lease_id,
                    hold_seconds=cap,
                )
            if result.outcome == "granted":
                break
            if result.outcome == "not_active":
                raise NotActive(session_id)
            if on_wait is not None and result.place != last_place:
                last_place = result.place
                await on_wait(result.place)
            if loop.time() >= give_up_at:
                raise CapacityTimeout(session_id)
            # While the push is heard, the poll only covers what publishes nothing (a slot
            # reclaimed by expiry) and the place shown to those further back: polling less
            # leaves the threads free for the woken waiters (a poll every 50 ms from each
            # waiter crowded them out on a loaded box).
            interval = poll_interval
            if wakeups.listening and handoff.WAKE_PLACES > 0:
                interval = max(poll_interval, LISTENING_POLL_SECONDS)
            answered = await wakeups.wait(interval, since=epoch, place=result.place, ask=ask)
    except BaseException:
        # Once no ask by the listener is in flight: a grant it made is released too.
        await asyncio.shield(asyncio.to_thread(handoff.release_after_ask, manager, ask))
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
