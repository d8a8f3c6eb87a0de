"""P4 (issue 11): a waiting page holds only what it needs. Per-socket state the page has not used
yet stays a class default (no instance attribute), the flood budgets appear with the first
frame, and the registry's entry has no per-instance __dict__. The figure itself is a benchmark
(bench/page_memory_bench.py), not a test."""

from __future__ import annotations

from typing import Any

import pytest

from sessions_app import fanout
from sessions_app.consumers.chat import ChatConsumer
from tests.test_consumers import (
    make_user,
    next_of,
    one_seat_and_a_queue,
    open_socket,
    set_limits,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

UNUSED_UNTIL_CHANGED = (
    "_buckets",
    "_strikes",
    "_strike_stamp",
    "_last_rate_error",
    "_refusing",
    "_unavailable_sent",
    "worker",
    "runs_wanted",
    "typing",
    "last_heartbeat",
    "conversation_id",
)


def consumer_of(session_id: str) -> Any:
    registry = fanout.get_registry()
    return next(sock for sock in registry.entries if sock.session_id == session_id)


@pytest.fixture(autouse=True)
def fast_echo(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ECHO_TOKEN_DELAY_SECONDS": 0.0}


async def test_a_waiting_page_holds_no_state_it_has_not_used() -> None:
    socks = await one_seat_and_a_queue(2)
    try:
        waiting = socks[1]
        await waiting.send_json_to({"type": "heartbeat"})
        status = await next_of(waiting, "queue.status")
        assert status["state"] == "queued" and status["position"] == 1
        consumer = consumer_of(status["session_id"])
        assert isinstance(consumer, ChatConsumer)
        own = set(vars(consumer))
        # The heartbeat made its bucket and its stamp (it was used); nothing else appeared.
        assert own & set(UNUSED_UNTIL_CHANGED) == {"_buckets", "last_heartbeat"}
        assert set(consumer._buckets) == {"*socket*", "heartbeat"}
        assert not hasattr(fanout.get_registry().entry(consumer), "__dict__")
    finally:
        for comm in socks:
            await comm.disconnect()


async def test_a_page_that_sent_nothing_has_no_budgets_yet() -> None:
    set_limits(max_active_sessions=1)
    first = await open_socket(await _user("m0"))
    second = await open_socket(await _user("m1"))
    try:
        status = await next_of(second, "queue.status")
        consumer = consumer_of(status["session_id"])
        assert not set(vars(consumer)) & set(UNUSED_UNTIL_CHANGED)
        # Behaviour unchanged: the budgets still apply once frames come (typing over its
        # budget is dropped quietly, and the socket stays open).
        for _ in range(30):
            await second.send_json_to({"type": "typing", "is_typing": True})
        await second.send_json_to({"type": "heartbeat"})
        assert (await next_of(second, "queue.status"))["state"] == "queued"
        assert consumer._buckets["typing"].tokens < 1.0
    finally:
        await first.disconnect()
        await second.disconnect()


async def _user(name: str) -> Any:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(make_user)(name)
