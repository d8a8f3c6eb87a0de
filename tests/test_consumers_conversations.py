"""The conversation frames of `/ws/chat/` (the conversations contract): new and continued
conversations, pairing when questions are sent back to back, regenerate, edit, cancel before
the answer starts, another person's ids, and a conversation that outlives its seat. Real Redis
channel layer, real admission engine, Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage, Conversation
from tests.test_consumers import frames_until, make_user, next_of, open_socket, set_limits

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async


@pytest.fixture(autouse=True)
def fast_echo(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ECHO_TOKEN_DELAY_SECONDS": 0.0}


async def ready(name: str) -> tuple[Any, Any]:
    user = await db(make_user)(name)
    comm = await open_socket(user)
    await next_of(comm, "queue.status")
    return user, comm


async def test_first_message_creates_a_conversation_and_announces_it() -> None:
    _, a = await ready("alice")
    await a.send_json_to({"type": "message", "content": "안녕하세요, 첫 질문", "client_id": "c1"})
    frames = await frames_until(a, "stream_end")
    updated = next(f for f in frames if f["type"] == "conversation.updated")
    msg = next(f for f in frames if f["type"] == "message")
    conv = await db(Conversation.objects.get)()
    assert updated["conversation"]["session_id"] == str(conv.pk) == msg["conversation_id"]
    assert updated["conversation"]["title"] == "안녕하세요, 첫 질문"
    assert updated["conversation"]["status"] == "active"
    assert msg["sender_type"] == "user" and msg["parent_id"] is None and msg["edited"] is False
    start = next(f for f in frames if f["type"] == "stream_start")
    assert start["message_id"] == msg["answer_id"] and start["parent_id"] == msg["message_id"]
    assert start["conversation_id"] == str(conv.pk)
    assert all(f["conversation_id"] == str(conv.pk) for f in frames if f["type"] == "stream_chunk")
    assert frames[-1]["message_id"] == msg["answer_id"] and frames[-1]["status"] == "done"
    await a.disconnect()


async def test_back_to_back_questions_pair_q1_a1_q2_a2(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ECHO_TOKEN_DELAY_SECONDS": 0.02}
    _, a = await ready("alice")
    await a.send_json_to({"type": "message", "content": "one", "client_id": "1"})
    first = await next_of(a, "message")
    conv = first["conversation_id"]
    await a.send_json_to({"type": "message", "content": "two", "conversation_id": conv})
    second = await next_of(a, "message")
    assert second["parent_id"] == first["answer_id"]
    ends = [await next_of(a, "stream_end"), await next_of(a, "stream_end")]
    assert [e["message_id"] for e in ends] == [first["answer_id"], second["answer_id"]]
    rows = await db(
        lambda: list(ChatMessage.objects.order_by("pk").values_list("parent_id", "content"))
    )()
    assert rows == [
        (None, "one"),
        (first["message_id"], "Echo: one"),
        (first["answer_id"], "two"),
        (second["message_id"], "Echo: two"),
    ]
    await a.disconnect()


async def test_regenerate_and_edit_make_siblings() -> None:
    _, a = await ready("alice")
    await a.send_json_to({"type": "message", "content": "q", "client_id": "1"})
    asked = await next_of(a, "message")
    await next_of(a, "stream_end")
    await a.send_json_to({"type": "regenerate", "message_id": asked["answer_id"]})
    start = await next_of(a, "stream_start")
    assert start["parent_id"] == asked["message_id"] and start["message_id"] != asked["answer_id"]
    assert (await next_of(a, "stream_end"))["status"] == "done"
    await a.send_json_to(
        {"type": "edit", "message_id": asked["message_id"], "content": "q2", "client_id": "e"}
    )
    edited = await next_of(a, "message")
    assert edited["edited"] is True and edited["parent_id"] is None and edited["client_id"] == "e"
    assert (await next_of(a, "stream_end"))["message_id"] == edited["answer_id"]
    answers = await db(
        lambda: list(
            ChatMessage.objects.filter(parent_id=asked["message_id"]).values_list(
                "content", flat=True
            )
        )
    )()
    assert answers == ["Echo: q", "Echo: q"]  # both versions kept
    # Regenerating a question, or editing an answer, is a clear error.
    await a.send_json_to({"type": "regenerate", "message_id": asked["message_id"]})
    assert (await next_of(a, "error"))["code"] == "BAD_REQUEST"
    await a.send_json_to({"type": "edit", "message_id": asked["answer_id"], "content": "x"})
    assert (await next_of(a, "error"))["code"] == "BAD_REQUEST"
    await a.disconnect()


async def test_cancel_before_the_answer_starts(settings: Any) -> None:
    """A question waiting for a slot is cancelled: never answered, every page told."""
    set_limits(max_concurrent_queries=1, query_wait_timeout_seconds=30)
    _, a = await ready("alice")
    holder = await db(make_user)("holder")
    hold = await db(services.session_open)(user=holder)
    assert get_manager().acquire_slot(hold.session_id, waiter_id="x").outcome == "granted"
    await a.send_json_to({"type": "message", "content": "waiting", "client_id": "1"})
    asked = await next_of(a, "message")
    waiting = await next_of(a, "system")
    assert (
        waiting["event"] == "waiting_for_capacity" and waiting["message_id"] == asked["answer_id"]
    )
    await a.send_json_to({"type": "cancel", "message_id": asked["message_id"]})
    end = await next_of(a, "stream_end")
    assert end["message_id"] == asked["answer_id"] and end["status"] == "cancelled"
    rows = await db(
        lambda: list(ChatMessage.objects.order_by("pk").values_list("status", flat=True))
    )()
    assert rows == ["cancelled", "cancelled"]
    await a.disconnect()
    # The worker gave up its place in the slot line when the socket closed.
    await asyncio.sleep(0.3)
    assert get_manager().counts()["waiting_queries"] == 0


async def test_another_persons_ids_are_not_found() -> None:
    _, bob = await ready("bob")
    await bob.send_json_to({"type": "message", "content": "mine", "client_id": "b"})
    theirs = await next_of(bob, "message")
    await next_of(bob, "stream_end")
    _, a = await ready("alice")
    for frame in (
        {
            "type": "message",
            "content": "x",
            "conversation_id": theirs["conversation_id"],
            "client_id": "k",
        },
        {"type": "message", "content": "x", "conversation_id": "not-a-uuid", "client_id": "k"},
        {"type": "regenerate", "message_id": theirs["answer_id"]},
        {"type": "edit", "message_id": theirs["message_id"], "content": "x"},
        {"type": "cancel", "message_id": theirs["message_id"]},
    ):
        await a.send_json_to(frame)
        error = await next_of(a, "error")
        assert error["code"] == "NOT_FOUND", frame
    assert await db(ChatMessage.objects.count)() == 2
    await a.disconnect()
    await bob.disconnect()


async def test_not_active_and_rate_limit_carry_the_client_id(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "CHAT_RATE_PER_MINUTE": 1}
    set_limits(max_active_sessions=1)
    _, a = await ready("alice")
    _, b = await ready("bob")
    await b.send_json_to({"type": "message", "content": "me first", "client_id": "q1"})
    error = await next_of(b, "error")
    assert (error["code"], error["client_id"]) == ("NOT_ACTIVE", "q1")
    await a.send_json_to({"type": "message", "content": "one", "client_id": "r1"})
    await next_of(a, "stream_end")
    await a.send_json_to({"type": "message", "content": "two", "client_id": "r2"})
    error = await next_of(a, "error")
    assert (error["code"], error["client_id"]) == ("RATE_LIMIT", "r2") and error["retry_after"] >= 1
    await a.disconnect()
    await b.disconnect()


async def test_queue_status_says_when_admissions_are_paused() -> None:
    set_limits(max_active_sessions=1)
    _, a = await ready("alice")
    _, b = await ready("bob")
    await asyncio.sleep(0.3)
    from sessions_app.models import GateSettings

    await db(lambda: services.limits_set(actor=None, admissions_paused=True))()
    status = await next_of(b, "queue.status", timeout=5)
    while not status["paused"]:
        status = await next_of(b, "queue.status", timeout=5)
    assert status["state"] == "queued" and status["position"] == 1
    await b.send_json_to({"type": "heartbeat"})
    assert (await next_of(b, "queue.status"))["paused"] is True
    await db(lambda: services.limits_set(actor=None, admissions_paused=False))()
    assert await db(lambda: GateSettings.load().admissions_paused)() is False
    await a.disconnect()
    await b.disconnect()


@pytest.mark.parametrize("how", ["leave", "staff", "expiry"])
async def test_a_conversation_outlives_its_seat(how: str) -> None:
    user, a = await ready("alice")
    await a.send_json_to({"type": "message", "content": "before", "client_id": "1"})
    first = await next_of(a, "message")
    await next_of(a, "stream_end")
    sid = get_manager().session_of_user(str(user.pk))
    if how == "leave":
        await a.send_json_to({"type": "leave"})
    elif how == "staff":
        await db(services.session_close)(session_id=sid, reason="admin", note="Maintenance")
    else:
        manager = get_manager()
        manager.client.zadd(manager.keys.active, {sid: manager.server_time() - 10_000})
        await db(services.sessions_sweep)()
    closed = await next_of(a, "session.closed")
    if how == "staff":
        assert closed["note"] == "Maintenance"
    await a.disconnect()
    assert await db(Conversation.objects.filter(status="active").count)() == 1
    # The next seat continues the same conversation.
    b = await open_socket(user)
    assert (await next_of(b, "queue.status"))["state"] == "active"
    await b.send_json_to(
        {"type": "message", "content": "after", "conversation_id": first["conversation_id"]}
    )
    again = await next_of(b, "message")
    assert again["parent_id"] == first["answer_id"]
    assert again["conversation_id"] == first["conversation_id"]
    assert (await next_of(b, "stream_end"))["status"] == "done"
    await b.disconnect()
