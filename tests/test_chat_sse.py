"""`POST /api/chat/sessions/<id>/messages/stream` through a real daphne: the answer as
Server-Sent Events, the same answer on the person's page socket, send order kept between an
SSE client and a socket, and a client that goes away mid-stream freeing its slot at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async

from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage
from tests.chat_http import login_cookie_for, open_sse, person
from tests.live import DaphneServer, start_daphne
from tests.test_chat_live import next_of, open_ws

pytestmark = [pytest.mark.timeout(180)]


def stream_path(conversation_id: str) -> str:
    return f"/api/chat/sessions/{conversation_id}/messages/stream"


async def test_the_answer_streams_as_events_and_reaches_the_page(
    daphne_server: DaphneServer,
) -> None:
    alice = await sync_to_async(person)("alice")
    cookie = await sync_to_async(login_cookie_for)(alice.user)
    page = await open_ws(daphne_server, cookie)
    await next_of(page, "queue.status")

    stream = await open_sse(
        daphne_server,
        stream_path(alice.conversation_id),
        {"content": "hello over http", "metadata": {"device": "cli"}},
        alice.auth,
    )
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    question = await stream.event()
    assert question["type"] == "message" and question["content"] == "hello over http"
    answer_id = question["answer_id"]
    start = await stream.until("stream_start")
    assert start["message_id"] == answer_id and start["sender_type"] == "assistant"
    text = ""
    while (event := await stream.event())["type"] == "stream_chunk":
        assert event["message_id"] == answer_id
        text += event["content"]
    assert event["type"] == "stream_end" and event["status"] == "done"
    assert event["tokens_used"] > 0 and event["latency_ms"] >= 0
    assert text == "Echo: hello over http"
    with pytest.raises(EOFError):
        await stream.event(5)  # the stream ends with the answer
    stream.close()

    # The page saw the same question and answer, with the earlier protocol's fields.
    shown = await next_of(page, "message")
    assert shown["message_id"] == question["message_id"] and shown["sender_id"] == "alice"
    assert shown["timestamp"]
    page_end = await next_of(page, "stream_end")
    assert page_end["message_id"] == answer_id and page_end["timestamp"]
    await page.close()

    async with httpx.AsyncClient(base_url=daphne_server.url, headers=alice.auth) as client:
        history = (await client.get(f"/api/chat/sessions/{alice.conversation_id}/messages")).json()
    ask, reply = history["messages"]
    assert ask["metadata"]["device"] == "cli" and ask["sender_type"] == "user"
    assert reply["content"] == text and reply["metadata"]["tokens_used"] == event["tokens_used"]


async def test_a_client_that_goes_away_frees_its_slot_within_a_second(
    transactional_db: None, tmp_path: Path
) -> None:
    server = start_daphne(tmp_path, "slow", ECHO_TOKEN_DELAY_SECONDS="0.3")
    try:
        alice = await sync_to_async(person)("alice")
        stream = await open_sse(
            server,
            stream_path(alice.conversation_id),
            {"content": " ".join(f"word{i}" for i in range(60))},
            alice.auth,
        )
        assert stream.status == 200
        answer_id = (await stream.event())["answer_id"]
        await stream.until("stream_chunk")
        manager = get_manager()
        assert manager.client.zcard(manager.keys.slots) == 1  # the answer holds a slot
        stream.close()
        closed_at = time.monotonic()
        while manager.client.zcard(manager.keys.slots) != 0:
            assert time.monotonic() - closed_at < 1.0, "the slot was still held after 1 s"
            await asyncio.sleep(0.02)
        freed_after = time.monotonic() - closed_at
        print(f"slot freed {freed_after * 1000:.0f} ms after the client closed")
        answer = await sync_to_async(ChatMessage.objects.get)(pk=answer_id)
        for _ in range(50):  # recorded right after the slot is given back
            if answer.status != "streaming":
                break
            await asyncio.sleep(0.05)
            answer = await sync_to_async(ChatMessage.objects.get)(pk=answer_id)
        assert answer.status == "cancelled" and answer.content.startswith("Echo:")
    finally:
        server.stop()


async def test_sse_and_socket_questions_are_answered_in_send_order(
    daphne_server: DaphneServer, tmp_path: Path
) -> None:
    other = start_daphne(tmp_path, "b")
    try:
        alice = await sync_to_async(person)("alice")
        cookie = await sync_to_async(login_cookie_for)(alice.user)
        page = await open_ws(other, cookie)  # the page lives on the other process
        await next_of(page, "queue.status")
        await page.send(
            json.dumps(
                {
                    "type": "message",
                    "content": "first from the page " + "x " * 20,
                    "conversation_id": alice.conversation_id,
                    "client_id": "c1",
                }
            )
        )
        first = await next_of(page, "message")
        stream = await open_sse(
            daphne_server, stream_path(alice.conversation_id), {"content": "second"}, alice.auth
        )
        second = await stream.event()
        assert second["message_id"] > first["answer_id"]
        await page.send(
            json.dumps(
                {
                    "type": "message",
                    "content": "third from the page",
                    "conversation_id": alice.conversation_id,
                    "client_id": "c3",
                }
            )
        )
        end = await stream.until("stream_end", timeout=60)
        assert end["status"] == "done"
        stream.close()
        ends: list[int] = []
        async with asyncio.timeout(60):
            while len(ends) < 3:
                frame = json.loads(await page.recv())
                if frame["type"] == "stream_end":
                    ends.append(frame["message_id"])
        assert ends == sorted(ends)  # answered one at a time, in the order asked
        assert second["answer_id"] in ends and first["answer_id"] == ends[0]
        rows = await sync_to_async(list)(
            ChatMessage.objects.filter(sender_type="assistant")
            .order_by("pk")
            .values_list("status", flat=True)
        )
        assert rows == ["done", "done", "done"]
        await page.close()
    finally:
        other.stop()


async def test_a_stream_waiting_for_a_slot_says_its_place_then_answers(
    transactional_db: None, tmp_path: Path
) -> None:
    server = start_daphne(tmp_path, "busy", ECHO_TOKEN_DELAY_SECONDS="0.2")
    try:
        get_manager().set_limits({"max_concurrent_queries": 1})
        bob = await sync_to_async(person)("bob")
        alice = await sync_to_async(person)("alice")
        busy = await open_sse(
            server, stream_path(bob.conversation_id), {"content": "a b c d e f g h"}, bob.auth
        )
        await busy.until("stream_start")
        stream = await open_sse(
            server, stream_path(alice.conversation_id), {"content": "me next"}, alice.auth
        )
        assert stream.status == 200
        waiting = await stream.until("waiting_for_capacity")
        assert waiting["position"] == 1 and waiting["message_id"] > 0
        start = await stream.until("stream_start", timeout=30)
        assert start["message_id"] == waiting["message_id"]
        end = await stream.until("stream_end")
        assert end["status"] == "done"
        assert (await busy.until("stream_end"))["status"] == "done"
        busy.close()
        stream.close()
    finally:
        server.stop()
