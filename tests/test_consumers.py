"""The `/ws/chat/` consumer through Channels' WebsocketCommunicator, on the real Redis channel
layer and the real admission engine: every client frame type and every error code."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.urls import path

from sessions_app import fanout, notifications
from sessions_app.consumers.chat import ChatConsumer
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

APP = URLRouter([path("ws/chat/", ChatConsumer.as_asgi())])


@pytest.fixture(autouse=True)
def fast_echo(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ECHO_TOKEN_DELAY_SECONDS": 0.0}


def make_user(name: str) -> Any:
    return get_user_model().objects.create_user(username=name)


async def open_socket(user: Any) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(APP, "/ws/chat/")
    comm.scope["user"] = user
    connected, code = await comm.connect(timeout=10)
    assert connected, code
    return comm


async def next_of(comm: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of type `kind`, skipping others (positions and chat frames interleave)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await comm.receive_json_from(timeout=max(deadline - loop.time(), 0.01))
        if frame["type"] == kind:
            return frame


async def frames_until(comm: WebsocketCommunicator, kind: str, timeout: float = 10) -> list[Any]:
    out = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await comm.receive_json_from(timeout=max(deadline - loop.time(), 0.01))
        out.append(frame)
        if frame["type"] == kind:
            return out


def set_limits(**limits: int) -> None:
    get_manager().set_limits(limits)


async def one_seat_and_a_queue(people: int) -> list[WebsocketCommunicator]:
    """One active person and `people - 1` waiting, in order, with their first frames read."""
    set_limits(max_active_sessions=1)
    socks = []
    for i in range(people):
        comm = await open_socket(await database_sync_to_async(make_user)(f"p{i}"))
        await next_of(comm, "queue.status")
        socks.append(comm)
    await asyncio.sleep(0.3)  # let the registry settle after the arrivals
    for comm in socks:
        while not await comm.receive_nothing(timeout=0.05):
            await comm.receive_json_from()
    return socks


async def test_anonymous_is_refused_before_accept() -> None:
    comm = WebsocketCommunicator(APP, "/ws/chat/")
    comm.scope["user"] = AnonymousUser()
    connected, code = await comm.connect()
    assert connected is False
    assert code == 4401
    await comm.disconnect()


async def test_connect_answers_with_queue_status_and_resumes_the_same_session() -> None:
    set_limits(max_active_sessions=1)
    alice, bob = (
        await database_sync_to_async(make_user)("alice"),
        await database_sync_to_async(make_user)("bob"),
    )
    a = await open_socket(alice)
    first = await a.receive_json_from()
    assert first["type"] == "queue.status" and first["state"] == "active"
    assert first["position"] == 0 and isinstance(first["version"], int)
    b = await open_socket(bob)
    queued = await b.receive_json_from()
    assert queued["state"] == "queued" and queued["position"] == 1 and queued["ahead"] == 0
    assert queued["eta_seconds"] > 0
    # A reload (a second socket) resumes the same place, never a new one.
    b2 = await open_socket(bob)
    again = await b2.receive_json_from()
    assert (again["session_id"], again["position"]) == (queued["session_id"], 1)
    for comm in (a, b, b2):
        await comm.disconnect()


async def test_leave_promotes_the_head_who_is_told_at_once() -> None:
    set_limits(max_active_sessions=1)
    alice, bob = [await database_sync_to_async(make_user)(n) for n in ("alice", "bob")]
    a = await open_socket(alice)
    await next_of(a, "queue.status")
    b = await open_socket(bob)
    assert (await next_of(b, "queue.status"))["position"] == 1
    await a.send_json_to({"type": "leave"})
    closed = await next_of(a, "session.closed")
    assert closed["reason"] == "user"
    assert (await a.receive_output(timeout=5))["type"] == "websocket.close"
    activated = await next_of(b, "session.activated")
    assert activated["session_id"]
    assert get_manager().counts() == {
        "active": 1,
        "queued": 0,
        "in_flight": 0,
        "waiting_queries": 0,
    }
    await b.disconnect()


async def test_positions_are_absolute_and_only_changed_places_are_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanout, "FLUSH_MIN_INTERVAL", 0.05)
    socks = await one_seat_and_a_queue(4)
    # The person in the middle (place 2 of 3) leaves: only the last one moves, 3 -> 2.
    await socks[2].send_json_to({"type": "leave"})
    await next_of(socks[2], "session.closed")
    moved = await next_of(socks[3], "queue.status")
    assert (moved["state"], moved["position"], moved["ahead"]) == ("queued", 2, 1)
    assert await socks[1].receive_nothing(timeout=0.5)  # place 1 did not change: no frame
    # The active person leaves: the head is promoted, the last one becomes number 1.
    before = moved["version"]
    await socks[0].send_json_to({"type": "leave"})
    await next_of(socks[1], "session.activated")
    now_first = await next_of(socks[3], "queue.status")
    assert now_first["position"] == 1 and now_first["version"] > before
    for comm in socks:
        await comm.disconnect()


async def test_a_message_is_recorded_and_streamed_back() -> None:
    alice = await database_sync_to_async(make_user)("alice")
    a = await open_socket(alice)
    await next_of(a, "queue.status")
    await a.send_json_to({"type": "message", "content": "hello there", "client_id": "c1"})
    # A new conversation is announced (conversation.updated) alongside the question's echo.
    frames = [f for f in await frames_until(a, "stream_end") if f["type"] != "conversation.updated"]
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "message" and frames[0]["client_id"] == "c1"
    assert "stream_start" in kinds
    chunks = [f for f in frames if f["type"] == "stream_chunk"]
    assert "".join(c["content"] for c in chunks) == "Echo: hello there"
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    end = frames[-1]
    assert end["status"] == "done" and end["tokens_used"] == len(chunks)
    rows = await database_sync_to_async(lambda: list(ChatMessage.objects.order_by("pk").values()))()
    assert [(r["sender_type"], r["status"]) for r in rows] == [
        ("user", "done"),
        ("assistant", "done"),
    ]
    assert rows[1]["parent_id"] == rows[0]["id"] == frames[0]["message_id"]
    assert frames[0]["answer_id"] == rows[1]["id"] == end["message_id"]
    assert frames[0]["conversation_id"] == str(rows[0]["conversation_id"])
    assert rows[1]["content"] == "Echo: hello there" and rows[1]["latency_ms"] is not None
    assert get_manager().counts()["in_flight"] == 0
    await a.disconnect()


async def test_queued_person_cannot_chat() -> None:
    set_limits(max_active_sessions=1)
    alice, bob = [await database_sync_to_async(make_user)(n) for n in ("alice", "bob")]
    a = await open_socket(alice)
    b = await open_socket(bob)
    await next_of(b, "queue.status")
    await b.send_json_to({"type": "message", "content": "me first"})
    error = await next_of(b, "error")
    assert error["code"] == "NOT_ACTIVE"
    assert await database_sync_to_async(ChatMessage.objects.count)() == 0
    await a.disconnect()
    await b.disconnect()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"type": "shout"}),
        json.dumps({"content": "no type"}),
        json.dumps({"type": "message"}),
        json.dumps({"type": "message", "content": "   "}),
        json.dumps({"type": "message", "content": "nul \u0000 inside"}),
        json.dumps({"type": "typing", "is_typing": "yes"}),
        json.dumps({"type": "cancel", "message_id": "seven"}),
        "[" * 3000,  # deeper than the JSON parser recurses: RecursionError, not JSONDecodeError
    ],
)
async def test_malformed_frames_get_bad_request_and_the_socket_stays_open(raw: str) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    a = await open_socket(alice)
    await next_of(a, "queue.status")
    await a.send_to(text_data=raw)
    error = await next_of(a, "error")
    assert error["code"] == "BAD_REQUEST" and error["message"]
    await a.send_json_to({"type": "heartbeat"})
    assert (await next_of(a, "queue.status"))["state"] == "active"
    await a.disconnect()


async def test_binary_frames_are_refused() -> None:
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    await a.send_to(bytes_data=b"\x00\x01")
    assert (await next_of(a, "error"))["code"] == "BAD_REQUEST"
    await a.disconnect()


async def test_typing_is_accepted_silently() -> None:
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    await a.send_json_to({"type": "typing", "is_typing": True})
    assert await a.receive_nothing(timeout=0.3)
    await a.disconnect()


async def test_typing_over_its_budget_is_dropped_quietly_and_questions_still_go() -> None:
    # The page sends a typing hint around every question; a fast typist used to exhaust the
    # typing budget, get RATE_LIMIT, and the page then held back the next question (CI failure
    # of tests/test_xss_page.py). A hint over budget is now just dropped.
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    for _ in range(15):  # past the typing burst (10), under the flood strikes (20)
        await a.send_json_to({"type": "typing", "is_typing": True})
    assert await a.receive_nothing(timeout=0.3)
    await a.send_json_to({"type": "message", "content": "still here", "client_id": "q1"})
    frames = await frames_until(a, "stream_end")
    assert [f for f in frames if f["type"] == "error"] == []
    await a.disconnect()


async def test_a_question_over_its_frame_budget_is_named_in_the_rate_limit() -> None:
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    for n in range(11):  # the message budget's burst is 10
        await a.send_json_to({"type": "message", "content": f"q{n}", "client_id": f"c{n}"})
    error = await next_of(a, "error")
    assert error["code"] == "RATE_LIMIT"
    assert (error["frame_type"], error["client_id"]) == ("message", "c10")
    await a.disconnect()


async def test_frames_over_64_kib_are_too_large() -> None:
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    await a.send_json_to({"type": "message", "content": "x" * (64 * 1024)})
    assert (await next_of(a, "error"))["code"] == "TOO_LARGE"
    await a.send_json_to({"type": "message", "content": "small"})  # still open and usable
    assert (await next_of(a, "stream_end"))["status"] == "done"
    await a.disconnect()


async def test_more_than_the_rate_gets_rate_limit_with_retry_after(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "CHAT_RATE_PER_MINUTE": 2}
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    for text in ("one", "two", "three"):
        await a.send_json_to({"type": "message", "content": text})
    error = await next_of(a, "error")
    assert error["code"] == "RATE_LIMIT" and 1 <= error["retry_after"] <= 60
    assert await database_sync_to_async(ChatMessage.objects.filter(sender_type="user").count)() == 2
    await a.disconnect()


async def test_cancel_stops_the_stream_and_frees_the_slot_at_once(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ECHO_TOKEN_DELAY_SECONDS": 0.2}
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    await a.send_json_to({"type": "message", "content": " ".join(["word"] * 50)})
    start = await next_of(a, "stream_start")
    await next_of(a, "stream_chunk")
    assert get_manager().counts()["in_flight"] == 1
    await a.send_json_to({"type": "cancel", "message_id": start["message_id"]})
    end = await next_of(a, "stream_end", timeout=3)
    assert end["status"] == "cancelled"
    assert get_manager().counts()["in_flight"] == 0
    answer = await database_sync_to_async(ChatMessage.objects.get)(pk=start["message_id"])
    assert answer.status == "cancelled" and 0 < len(answer.content) < 100
    await a.disconnect()


async def test_capacity_timeout_after_waiting_in_line() -> None:
    set_limits(max_concurrent_queries=1, query_wait_timeout_seconds=1)
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    b = await open_socket(await database_sync_to_async(make_user)("bob"))
    await next_of(a, "queue.status")
    await next_of(b, "queue.status")
    # Bob's session holds the only query slot (taken directly, as another process would).
    bob_sid = get_manager().session_of_user(
        str((await database_sync_to_async(get_user_model().objects.get)(username="bob")).pk)
    )
    assert get_manager().acquire_slot(bob_sid, waiter_id="other").outcome == "granted"
    await a.send_json_to({"type": "message", "content": "anyone?"})
    waiting = await next_of(a, "system")
    assert waiting["event"] == "waiting_for_capacity" and waiting["place"] == 1
    error = await next_of(a, "error", timeout=5)
    assert error["code"] == "CAPACITY_TIMEOUT"
    question = await database_sync_to_async(ChatMessage.objects.get)(sender_type="user")
    answer = await database_sync_to_async(ChatMessage.objects.get)(sender_type="assistant")
    assert question.status == "failed" and answer.status == "failed"
    assert error["message_id"] == waiting["message_id"] == answer.pk
    assert get_manager().counts()["waiting_queries"] == 0
    await a.disconnect()
    await b.disconnect()


async def test_backend_error_is_reported(settings: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CHATGATE = {
        **settings.CHATGATE,
        "CHAT_BACKEND": "openai",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
    }
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    await a.send_json_to({"type": "message", "content": "hi"})
    end = await next_of(a, "stream_end")
    assert end["status"] == "failed"
    error = await next_of(a, "error")
    assert error["code"] == "BACKEND_ERROR" and "127.0.0.1" not in error["message"]
    assert get_manager().counts()["in_flight"] == 0
    await a.disconnect()


async def test_two_tabs_are_answered_one_at_a_time_in_order(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ECHO_TOKEN_DELAY_SECONDS": 0.01}
    alice = await database_sync_to_async(make_user)("alice")
    tab1, tab2 = await open_socket(alice), await open_socket(alice)
    await next_of(tab1, "queue.status")
    await next_of(tab2, "queue.status")
    for i in range(6):
        await (tab1 if i % 2 == 0 else tab2).send_json_to({"type": "message", "content": f"m{i}"})
    # Both tabs see every frame of the session; answers never overlap and follow the order.
    frames: list[dict[str, Any]] = []
    while sum(f["type"] == "stream_end" for f in frames) < 6:
        frames.append(await tab1.receive_json_from(timeout=10))
    streaming = None
    answered = []
    by_id = {f["answer_id"]: f["content"] for f in frames if f["type"] == "message"}
    for f in frames:
        if f["type"] == "stream_start":
            assert streaming is None, "two answers streamed at once"
            streaming = f["message_id"]
            answered.append(by_id[f["message_id"]])
        elif f["type"] == "stream_end":
            assert f["message_id"] == streaming
            streaming = None
    # "In order" is the order the server recorded the questions (their ids): two sockets are
    # two connections, so tab2's m1 may be read before tab1's m0 on a loaded machine.
    recorded = [
        f["content"]
        for f in sorted(
            (f for f in frames if f["type"] == "message"), key=lambda f: f["message_id"]
        )
    ]
    assert sorted(recorded) == [f"m{i}" for i in range(6)]
    assert answered == recorded
    await tab1.disconnect()
    await tab2.disconnect()


async def test_idle_warning_keep_and_expiry() -> None:
    set_limits(idle_timeout_seconds=40)
    alice = await database_sync_to_async(make_user)("alice")
    a = await open_socket(alice)
    status = await next_of(a, "queue.status")
    manager = get_manager()
    sid = status["session_id"]
    # 35 s of silence (the idle clock is the score of the active set; the window is 10 s).
    manager.client.zadd(manager.keys.active, {sid: manager.server_time() - 35})
    await fanout.get_registry().warn_expiring()
    warning = await next_of(a, "session.expiring")
    assert 0 < warning["seconds_left"] <= 5
    await a.send_json_to({"type": "heartbeat", "keep": True})  # "I'm still here"
    await next_of(a, "queue.status")
    await fanout.get_registry().warn_expiring()
    assert await a.receive_nothing(timeout=0.3)
    manager.client.zadd(manager.keys.active, {sid: manager.server_time() - 41})
    await fanout.get_registry().warn_expiring()
    closed = await next_of(a, "session.closed")
    assert closed["reason"] == "expired"
    await a.disconnect()


async def test_presence_is_renewed_while_a_page_is_open() -> None:
    alice = await database_sync_to_async(make_user)("alice")
    a = await open_socket(alice)
    status = await next_of(a, "queue.status")
    manager = get_manager()
    # Last seen a minute ago (within the 2-minute grace): the registry's touch renews it.
    manager.client.zadd(manager.keys.seen, {status["session_id"]: manager.server_time() - 60})
    await fanout.get_registry().keep_present()
    seen = manager.seen_times([status["session_id"]])[status["session_id"]]
    assert seen is not None and seen > manager.server_time() - 5
    await a.disconnect()


async def test_banner_changes_reach_every_socket() -> None:
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    await asyncio.sleep(0.2)  # the registry joins the queue group
    await database_sync_to_async(notifications.banner_changed)("Maintenance at 22:00")
    banner = await next_of(a, "banner.changed")
    assert banner["message"] == "Maintenance at 22:00"
    await a.disconnect()


async def test_place_changes_are_coalesced_to_about_one_a_second_per_person() -> None:
    socks = await one_seat_and_a_queue(5)
    last = socks[4]  # number 4
    loop = asyncio.get_running_loop()
    # Two people ahead leave in quick succession: the last person hears 3 at once, and 2
    # only when a second has passed since, never a stale number in between.
    await socks[2].send_json_to({"type": "leave"})
    first = await next_of(last, "queue.status")
    told_at = loop.time()
    assert first["position"] == 3
    await socks[3].send_json_to({"type": "leave"})
    second = await next_of(last, "queue.status", timeout=5)
    assert second["position"] == 2 and second["version"] > first["version"]
    assert loop.time() - told_at >= fanout.FLUSH_MIN_INTERVAL - fanout.FLUSH_SLACK - 0.05
    for comm in socks:
        await comm.disconnect()


async def test_a_crashed_socket_stops_holding_its_persons_presence(monkeypatch) -> None:
    """`disconnect` never runs for a consumer whose handler crashed; the registry must still
    forget it, or it would renew that person's presence forever."""
    a = await open_socket(await database_sync_to_async(make_user)("alice"))
    await next_of(a, "queue.status")
    registry = fanout.get_registry()
    assert len(registry.entries) == 1

    async def crash(self: ChatConsumer, content: dict[str, Any]) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(ChatConsumer, "on_heartbeat", crash)
    await a.send_json_to({"type": "heartbeat"})
    with pytest.raises(RuntimeError):
        await a.wait(timeout=2)
    assert len(registry.entries) == 0
