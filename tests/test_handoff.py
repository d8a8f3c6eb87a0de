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

from sessions_app import conf
from sessions_app.chat import generation, handoff
from sessions_app.gate import services
from sessions_app.gate.admission import AdmissionManager, get_manager
from sessions_app.gate.slots import SlotResult

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


async def released_while_waiting(
    ask: Any, places: list[int], other: AdmissionManager, holder: str, held: SlotResult
) -> Any:
    """Starts `ask` (a coroutine that waits for a slot, recording its places in `places`) once
    this process listens; releases the slot held elsewhere once `ask` has been shown a place;
    returns what `ask` returns."""
    await wait_listening(get_manager())
    task = asyncio.create_task(ask)
    while not places:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
    return await asyncio.wait_for(task, timeout=10)


def slot_for(sid: str, places: list[int], poll_interval: float = SLOW_POLL) -> Any:
    """generation_slot for `sid` (60 s limit), recording in `places` each place it is shown."""

    async def on_wait(place: int) -> None:
        places.append(place)

    return generation.generation_slot(
        session_id=sid, on_wait=on_wait, timeout=60, poll_interval=poll_interval
    )


def test_a_slot_freed_by_another_process_wakes_the_waiter_at_once(redis_url: str) -> None:
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    assert held.outcome == "granted"

    async def scenario() -> float:
        places: list[int] = []

        async def ask() -> float:
            async with slot_for(waiter, places):
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


def acquire_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the outcome of every acquire_slot.lua call made in this process."""
    outcomes: list[str] = []
    real = AdmissionManager.acquire_slot

    def acquire_slot(self: AdmissionManager, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        outcomes.append(result.outcome)
        return result

    monkeypatch.setattr(AdmissionManager, "acquire_slot", acquire_slot)
    return outcomes


def pushes_held(monkeypatch: pytest.MonkeyPatch, gate: threading.Event) -> None:
    """The listener hears each grant but wakes nobody until `gate` is set (a slow push)."""
    real = handoff.SlotWakeups.granted

    def granted(self: handoff.SlotWakeups, grants: dict[str, SlotResult]) -> None:
        assert gate.wait(10)
        real(self, grants)

    monkeypatch.setattr(handoff.SlotWakeups, "granted", granted)


async def waiting_for(sid: str, places: list[int]) -> None:
    async with slot_for(sid, places):
        raise AssertionError("this waiter never generates")


def test_the_release_itself_grants_the_front_waiter_and_nobody_asks_again(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiters, other, held = slot_held_elsewhere(redis_url, 3)
    outcomes = acquire_calls(monkeypatch)
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
        # Granted in Redis by the release's own script, before anyone here heard of it.
        assert get_manager().counts()["in_flight"] == 1
        while not granted:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # time for any further (needless) asks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    assert granted == waiters[:1]
    assert outcomes == [], outcomes  # the grant came by push: no script asked for it
    assert get_manager().counts() == {
        "active": 4,
        "queued": 0,
        "in_flight": 0,
        "waiting_queries": 0,
    }
    other.client.close()


def test_a_grant_handed_to_a_waiter_being_cancelled_is_given_back(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot is handed to a waiter whose task is cancelled before the push reaches it (a
    Stop, a closed page): the cancelled waiter releases its lease by id, so the grant is not
    left holding a slot nobody uses."""
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    gate = threading.Event()
    pushes_held(monkeypatch, gate)

    async def scenario() -> None:
        places: list[int] = []
        await wait_listening(get_manager())
        task = asyncio.create_task(waiting_for(waiter, places))
        while not places:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        assert get_manager().counts()["in_flight"] == 1  # handed to our waiter, who has not heard
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        gate.set()  # the push arrives after the waiter has gone: it wakes nobody
        await asyncio.sleep(0.2)

    asyncio.run(scenario())
    counts = get_manager().counts()
    assert counts["in_flight"] == 0, counts  # the grant was released, not left held
    assert counts["waiting_queries"] == 0, counts
    other.client.close()


def test_a_waiter_that_misses_the_push_finds_its_grant_on_its_next_poll(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No push reaches the waiter (the listener reconnecting): its next poll is told "granted"
    for the lease handed to it, not queued again behind that lease."""
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    monkeypatch.setattr(handoff.SlotWakeups, "granted", lambda self, grants: None)
    outcomes = acquire_calls(monkeypatch)

    async def scenario() -> str:
        places: list[int] = []

        async def ask() -> str:
            # The fallback poll while listening is LISTENING_POLL_SECONDS (0.5 s at most).
            async with slot_for(waiter, places, poll_interval=0.05) as lease:
                return lease

        return await released_while_waiting(ask(), places, other, holder, held)

    lease = asyncio.run(scenario())
    assert outcomes[-1] == "granted" and set(outcomes[:-1]) == {"wait"}, outcomes
    assert lease
    assert get_manager().counts()["in_flight"] == 0
    assert get_manager().counts()["waiting_queries"] == 0
    other.client.close()


def test_a_grant_heard_before_its_waiter_waits_is_kept_for_it(redis_url: str) -> None:
    """The waiter's poll ("wait") and the release that hands it the slot cross: the listener
    hears the grant before the waiter starts waiting, and keeps it for that waiter."""
    wakeups = handoff.wakeups_for(get_manager())
    grant = SlotResult("granted", lease_id="L1", deadline=1.0)

    async def scenario() -> tuple[SlotResult | None, SlotResult | None]:
        wakeups.granted({"s:early": grant, "elsewhere:1": grant})
        started = time.monotonic()
        mine = await wakeups.wait(SLOW_POLL, waiter_id="s:early")
        assert time.monotonic() - started < 1.0
        again = await wakeups.wait(0.05, waiter_id="s:early")  # a grant is kept once only
        return mine, again

    assert asyncio.run(scenario()) == (grant, None)


def test_the_listener_ignores_a_message_that_is_not_grants(
    redis_url: str,
) -> None:
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)

    async def scenario() -> None:
        places: list[int] = []
        await wait_listening(get_manager())
        channel = get_manager().keys.slot_free
        for junk in (b"1", b"not json", b'{"a": 1}', b"[[1]]"):
            await asyncio.to_thread(other.client.publish, channel, junk)

        async def ask() -> float:
            async with slot_for(waiter, places):
                return time.monotonic()

        task = asyncio.create_task(ask())
        while not places:
            await asyncio.sleep(0.01)
        released_at = time.monotonic()
        await asyncio.to_thread(other.release_slot, holder, lease_id=held.lease_id)
        assert await asyncio.wait_for(task, timeout=5) - released_at < 1.0

    asyncio.run(scenario())
    other.client.close()


def test_a_pushed_grant_takes_its_generation_hold_as_the_waiter_starts(redis_url: str) -> None:
    holder, (waiter,), other, held = slot_held_elsewhere(redis_url, 1)
    manager = get_manager()
    cap = float(conf.get("GENERATION_MAX_SECONDS"))
    assert cap > 60

    async def scenario() -> float:
        places: list[int] = []

        async def ask() -> float:
            async with slot_for(waiter, places) as lease:
                for _ in range(100):  # the hold is taken beside the start, not before it
                    left = manager.client.zscore(manager.keys.slots, lease) - time.time()
                    if left > 60:
                        return left
                    await asyncio.sleep(0.02)
                return left

        return await released_while_waiting(ask(), places, other, holder, held)

    left = asyncio.run(scenario())
    assert cap - 5 < left <= cap, left  # handed over with one lease TTL (30 s), then the cap
    other.client.close()


def test_the_holds_of_one_burst_of_releases_are_taken_in_one_call_after_the_wake_ups(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three answers end together elsewhere: three releases, three messages. The listener wakes
    the three waiters first and takes their three holds in one call once the burst is over
    (one round trip a burst, not one a grant)."""
    get_manager().set_limits({"max_concurrent_queries": 3})
    *holders, w1, w2, w3 = open_sessions(6)
    waiters = [w1, w2, w3]
    other = other_process(redis_url)
    helds = [other.acquire_slot(h, waiter_id=f"{h}:x") for h in holders]
    manager = get_manager()
    cap = float(conf.get("GENERATION_MAX_SECONDS"))
    # Generous, so that a slow machine's three releases still fall in one burst.
    monkeypatch.setattr(handoff, "HOLD_QUIET_SECONDS", 2.0)
    monkeypatch.setattr(handoff, "HOLD_DEFER_MAX_SECONDS", 6.0)
    leases: list[str] = []
    calls: list[tuple[list[tuple[str, float]], int]] = []
    real = AdmissionManager.take_holds

    def take_holds(self: AdmissionManager, holds: list[tuple[str, float]], **kw: Any) -> Any:
        started = len(leases)  # the questions already running when the holds are taken
        taken = real(self, holds, **kw)
        calls.append((list(holds), started))  # after the call: the holds are in Redis
        return taken

    monkeypatch.setattr(AdmissionManager, "take_holds", take_holds)

    def release_all() -> None:
        for holder, held in zip(holders, helds, strict=True):
            other.release_slot(holder, lease_id=held.lease_id)

    async def scenario() -> list[float]:
        places: dict[str, list[int]] = {sid: [] for sid in waiters}
        started = asyncio.Event()

        async def ask(sid: str) -> None:
            async with slot_for(sid, places[sid]) as lease:
                leases.append(lease)
                await started.wait()

        await wait_listening(manager)
        tasks = [asyncio.create_task(ask(sid)) for sid in waiters]
        while not all(places.values()):
            await asyncio.sleep(0.01)
        await asyncio.to_thread(release_all)
        for _ in range(1000):
            if calls:
                break
            await asyncio.sleep(0.01)
        lefts = [manager.client.zscore(manager.keys.slots, lease) - time.time() for lease in leases]
        started.set()
        await asyncio.gather(*tasks)
        return lefts

    lefts = asyncio.run(scenario())
    assert len(calls) == 1, calls
    holds, running = calls[0]
    assert len(holds) == 3 and running == 3, calls  # all three woken before the holds
    assert len(lefts) == 3 and all(cap - 5 < left <= cap for left in lefts), lefts
    other.client.close()


def test_a_waiter_cancelled_while_its_poll_is_in_flight_leaves_nothing_behind(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel cannot stop a script already sent: the give-back waits for it, so the late
    poll does not queue the waiter again, or keep a slot it granted, after the release."""
    get_manager().set_limits({"max_concurrent_queries": 1})
    (sid,) = open_sessions(1)
    entered, gate = threading.Event(), threading.Event()
    real = AdmissionManager.acquire_slot

    def acquire_slot(self: AdmissionManager, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert gate.wait(10)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AdmissionManager, "acquire_slot", acquire_slot)

    async def scenario() -> None:
        task = asyncio.create_task(waiting_for(sid, []))
        assert await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        await asyncio.sleep(0.2)  # a give-back that did not wait would have run by now
        gate.set()  # the poll goes through: the free slot is granted to the cancelled waiter
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    counts = get_manager().counts()
    assert counts["in_flight"] == 0, counts
    assert counts["waiting_queries"] == 0, counts


def test_waiters_that_began_together_do_not_poll_in_step(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nineteen questions wait at once behind a held slot: their fallback polls spread over the
    interval instead of reaching the worker threads and Redis together (as they would meet a
    burst of releases)."""
    holder, waiters, other, held = slot_held_elsewhere(redis_url, 19)
    calls: dict[str, list[float]] = {sid: [] for sid in waiters}
    real = AdmissionManager.acquire_slot

    def acquire_slot(self: AdmissionManager, session_id: str, **kwargs: Any) -> Any:
        calls[session_id].append(time.monotonic())
        return real(self, session_id, **kwargs)

    monkeypatch.setattr(AdmissionManager, "acquire_slot", acquire_slot)

    async def scenario() -> None:
        await wait_listening(get_manager())

        async def ask(sid: str) -> None:
            async with slot_for(sid, [], poll_interval=0.05):
                pass

        tasks = [asyncio.create_task(ask(sid)) for sid in waiters]
        for _ in range(1000):  # 10 s at most
            if min(len(times) for times in calls.values()) >= 3 or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    third = sorted(times[2] for times in calls.values())
    # In step, the third polls would come within the threads' own spread (a few ms to tens).
    assert third[-1] - third[0] > 0.15, third
    other.release_slot(holder, lease_id=held.lease_id)
    other.client.close()
