"""Slot handoff: a freed generation slot reaches the next waiting question at once (a push over
Redis pub/sub), not on its next poll, and the push never changes who gets the slot."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User

from sessions_app.chat import generation, handoff
from sessions_app.gate import services
from sessions_app.gate.admission import AdmissionManager, SlotResult, get_manager

pytestmark = pytest.mark.django_db

# Far longer than any test waits: a grant that arrives quickly cannot have come from the poll.
SLOW_POLL = 30.0


def open_sessions(n: int) -> list[str]:
    users = [User.objects.create_user(f"h{i}", password="x") for i in range(n)]
    return [services.session_open(user=u).session_id for u in users]


def other_process(redis_url: str) -> AdmissionManager:
    """A manager on its own connection, as another daphne process would hold."""
    mine = get_manager()
    return AdmissionManager(redis.Redis.from_url(redis_url), mine.keys)


def slot_held_elsewhere(
    redis_url: str, waiters: int
) -> tuple[str, list[str], AdmissionManager, SlotResult]:
    """Limit 1, its slot held by another process: (the holder, `waiters` other open sessions,
    that process's manager, the held grant)."""
    get_manager().set_limits({"max_concurrent_queries": 1})
    holder, *others = open_sessions(1 + waiters)
    other = other_process(redis_url)
    held = other.acquire_slot(holder, waiter_id=f"{holder}:x", hold_seconds=0)
    return holder, others, other, held


async def wait_listening(manager: AdmissionManager) -> None:
    wakeups = handoff.wakeups_for(manager)
    for _ in range(200):
        if wakeups.listening:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the handoff listener never subscribed")


def test_a_slot_freed_by_another_process_wakes_the_waiter_at_once(redis_url: str) -> None:
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    assert held.outcome == "granted"

    async def scenario() -> float:
        places: list[int] = []

        async def on_wait(place: int) -> None:
            places.append(place)

        async def ask() -> float:
            async with generation.generation_slot(
                session_id=waiter, on_wait=on_wait, timeout=60, poll_interval=SLOW_POLL
            ):
                return time.monotonic()

        task = asyncio.create_task(ask())
        await wait_listening(get_manager())
        while not places:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the waiter is asleep on its (30 s) poll by now
        assert not task.done()
        released_at = time.monotonic()
        assert await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        granted_at = await asyncio.wait_for(task, timeout=5)
        return granted_at - released_at

    handoff_seconds = asyncio.run(scenario())
    assert handoff_seconds < 1.0, handoff_seconds
    other.client.close()


def test_woken_waiters_are_still_served_in_the_order_they_asked(redis_url: str) -> None:
    """Every waiter is woken by each release; the script alone picks who gets the slot."""
    holder, waiters, other, held = slot_held_elsewhere(redis_url, 3)
    order: list[str] = []

    async def scenario() -> None:
        asked: list[str] = []

        async def ask(sid: str) -> None:
            async def on_wait(place: int) -> None:
                if sid not in asked:
                    asked.append(sid)

            async with generation.generation_slot(
                session_id=sid, on_wait=on_wait, timeout=60, poll_interval=SLOW_POLL
            ):
                order.append(sid)
                await asyncio.sleep(0.05)  # hold it a moment: the others must keep waiting

        await wait_listening(get_manager())
        tasks = []
        for sid in waiters:  # one at a time, so that the order they asked in is known
            tasks.append(asyncio.create_task(ask(sid)))
            while sid not in asked:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    asyncio.run(scenario())
    assert order == waiters
    assert get_manager().counts()["in_flight"] == 0
    other.client.close()


def listener_asks(
    monkeypatch: pytest.MonkeyPatch, gate: threading.Event | None = None
) -> list[str]:
    """Records the outcome of every acquire_slot.lua call the listener thread makes; with a
    `gate`, each such call first waits for it (an ask held in flight)."""
    outcomes: list[str] = []
    real = AdmissionManager.acquire_slot

    def acquire_slot(self: AdmissionManager, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name != "slot-handoff":
            return real(self, *args, **kwargs)
        if gate is not None:
            assert gate.wait(10)
        result = real(self, *args, **kwargs)
        outcomes.append(result.outcome)
        return result

    monkeypatch.setattr(AdmissionManager, "acquire_slot", acquire_slot)
    return outcomes


def test_one_release_costs_the_listener_one_ask_per_waiter_up_to_the_first_told_to_wait(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiters, other, held = slot_held_elsewhere(redis_url, 4)
    outcomes = listener_asks(monkeypatch)
    granted: list[str] = []

    async def scenario() -> None:
        asked: list[str] = []

        async def ask(sid: str) -> None:
            async def on_wait(place: int) -> None:
                asked.append(sid)

            async with generation.generation_slot(
                session_id=sid, on_wait=on_wait, timeout=60, poll_interval=SLOW_POLL
            ):
                granted.append(sid)
                await asyncio.sleep(30)  # keep the slot: the others stay waiting

        await wait_listening(get_manager())
        tasks = []
        for sid in waiters:  # one at a time, so that the order they asked in is known
            tasks.append(asyncio.create_task(ask(sid)))
            while sid not in asked:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # every waiter asleep on its 30 s poll
        outcomes.clear()
        await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        while not granted:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # time for any further (needless) asks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    # The first waiter got the slot; the second was told to wait, so the third and fourth,
    # behind it, were not asked for (the old wake-up made every waiter ask: four scripts).
    assert granted == waiters[:1]
    assert outcomes == ["granted", "wait"], outcomes
    assert get_manager().counts()["in_flight"] == 0
    other.client.close()


def test_a_grant_made_while_the_waiter_is_cancelled_is_given_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener is mid-ask when the waiter's task is cancelled (a Stop, a closed page): the
    release waits for that ask, so its grant is released instead of holding a slot nobody uses."""
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    gate = threading.Event()
    outcomes = listener_asks(monkeypatch, gate)

    async def scenario() -> None:
        places: list[int] = []

        async def on_wait(place: int) -> None:
            places.append(place)

        async def ask() -> None:
            async with generation.generation_slot(
                session_id=waiter, on_wait=on_wait, timeout=60, poll_interval=SLOW_POLL
            ):
                raise AssertionError("a cancelled waiter never generates")

        await wait_listening(get_manager())
        task = asyncio.create_task(ask())
        while not places:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        await asyncio.sleep(0.2)  # the listener is now held inside its ask for our waiter
        task.cancel()
        await asyncio.sleep(0.2)
        gate.set()  # the ask goes through and grants the slot to the cancelled waiter
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert outcomes == ["granted"]
    counts = get_manager().counts()
    assert counts["in_flight"] == 0, counts  # the grant was released, not left held
    assert counts["waiting_queries"] == 0, counts
    other.client.close()


def test_a_waiter_whose_poll_ends_during_the_listeners_ask_takes_its_grant(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter's own poll comes due while the listener asks for it: it waits for that answer
    (a grant) instead of asking again, which would queue it behind its own lease."""
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    gate = threading.Event()
    outcomes = listener_asks(monkeypatch, gate)

    async def scenario() -> str:
        places: list[int] = []

        async def on_wait(place: int) -> None:
            places.append(place)

        async def ask() -> str:
            # The fallback poll while listening is LISTENING_POLL_SECONDS (0.25 s).
            async with generation.generation_slot(
                session_id=waiter, on_wait=on_wait, timeout=60, poll_interval=0.05
            ) as lease:
                return lease

        await wait_listening(get_manager())
        task = asyncio.create_task(ask())
        while not places:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        await asyncio.sleep(generation.LISTENING_POLL_SECONDS * 3)  # the poll came due meanwhile
        gate.set()
        return await asyncio.wait_for(task, timeout=10)

    lease = asyncio.run(scenario())
    assert outcomes == ["granted"]
    assert lease
    assert get_manager().counts()["in_flight"] == 0
    other.client.close()
