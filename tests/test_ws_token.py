"""`/ws/chat/` for programs, through a real daphne: API tokens (header or `?token=`), the
earlier `ws/chat/<conversation_id>` form, and what the person's other pages are told (typing,
who joined and left)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage
from tests.chat_http import login_cookie_for, person
from tests.live import DaphneServer
from tests.test_chat_live import next_of, open_ws

pytestmark = [pytest.mark.timeout(120)]


async def program(
    server: DaphneServer,
    *,
    token: str | None = None,
    query: str = "",
    path: str = "/ws/chat/",
) -> ClientConnection:
    """A program's socket: no Origin header, no cookie."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await connect(
        f"{server.ws_url}{path}{query}", additional_headers=headers, open_timeout=10
    )


async def refused_with(ws: ClientConnection) -> tuple[dict[str, Any], int]:
    """The error frame a refused program gets, and the close code after it."""
    error = await next_of(ws, "error")
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    return error, closed.value.rcvd.code


async def test_a_token_in_the_header_or_the_query_opens_the_chat(
    daphne_server: DaphneServer,
) -> None:
    alice = await sync_to_async(person)("alice")
    for how in ("header", "query"):
        if how == "header":
            ws = await program(daphne_server, token=alice.token)
        else:
            ws = await program(daphne_server, query=f"?token={alice.token}")
        status = await next_of(ws, "queue.status")
        assert status["state"] == "active"
        await ws.send(
            json.dumps(
                {
                    "type": "message",
                    "content": "from a bot",
                    "conversation_id": alice.conversation_id,
                }
            )
        )
        shown = await next_of(ws, "message")
        assert shown["sender_type"] == "user" and shown["sender_id"] == "alice"
        assert shown["message_id"] and shown["timestamp"]
        end = await next_of(ws, "stream_end")
        assert end["status"] == "done" and end["sender_type"] == "assistant"
        await ws.close()
    assert await sync_to_async(ChatMessage.objects.filter(status="done").count)() == 4


async def test_bad_tokens_and_foreign_users_are_refused_with_a_reason(
    daphne_server: DaphneServer,
) -> None:
    alice = await sync_to_async(person)("alice")
    await sync_to_async(person)("bob")
    error, code = await refused_with(await program(daphne_server, token="cg_not_a_token"))
    assert (error["code"], code) == ("INVALID_TOKEN", 4401)
    error, code = await refused_with(await program(daphne_server, query="?token=cg_nope"))
    assert (error["code"], code) == ("INVALID_TOKEN", 4401)
    # alice's token may act only for alice.
    error, code = await refused_with(
        await program(daphne_server, token=alice.token, query="?user_id=bob")
    )
    assert (error["code"], code) == ("FORBIDDEN", 4403)
    assert get_manager().counts()["active"] == 0  # no seat was opened for anyone
    # The staff console never takes tokens: without a cookie it is refused at the handshake.
    with pytest.raises(InvalidStatus):
        await program(daphne_server, token=alice.token, path="/ws/console/")


async def test_a_service_token_acts_for_a_user_it_may(daphne_server: DaphneServer) -> None:
    service = await sync_to_async(person)("service", can_act_for_users=True)
    bob = await sync_to_async(person)("bob")
    ws = await program(daphne_server, token=service.token, query="?user_id=bob")
    assert (await next_of(ws, "queue.status"))["state"] == "active"
    await ws.send(
        json.dumps({"type": "message", "content": "hi", "conversation_id": bob.conversation_id})
    )
    shown = await next_of(ws, "message")
    assert shown["sender_id"] == "bob" and shown["conversation_id"] == bob.conversation_id
    await ws.close()
    error, code = await refused_with(
        await program(daphne_server, token=service.token, query="?user_id=nobody")
    )
    assert (error["code"], code) == ("NOT_FOUND", 4404)


async def test_the_conversation_path_form(daphne_server: DaphneServer) -> None:
    alice = await sync_to_async(person)("alice")
    bob = await sync_to_async(person)("bob")
    ws = await program(daphne_server, token=alice.token, path=f"/ws/chat/{alice.conversation_id}")
    await next_of(ws, "queue.status")
    await ws.send(json.dumps({"type": "message", "content": "no id given"}))
    shown = await next_of(ws, "message")
    assert shown["conversation_id"] == alice.conversation_id  # the socket's conversation
    await ws.close()
    for foreign in (bob.conversation_id, "not-a-uuid"):
        error, code = await refused_with(
            await program(daphne_server, token=alice.token, path=f"/ws/chat/{foreign}")
        )
        assert (error["code"], code) == ("NOT_FOUND", 4404)


async def test_typing_and_presence_reach_the_other_pages_not_the_sender(
    daphne_server: DaphneServer,
) -> None:
    alice = await sync_to_async(person)("alice")
    page = await open_ws(daphne_server, await sync_to_async(login_cookie_for)(alice.user))
    await next_of(page, "queue.status")
    bot = await program(daphne_server, token=alice.token)
    await next_of(bot, "queue.status")
    joined = await next_of(page, "system")
    assert joined["event"] == "user_joined" and joined["via"] == "token"

    await bot.send(json.dumps({"type": "typing", "is_typing": True}))
    await bot.send(json.dumps({"type": "typing", "is_typing": True}))  # a repeat: throttled
    await bot.send(json.dumps({"type": "typing", "is_typing": False}))
    first = await next_of(page, "typing")
    assert first["is_typing"] is True and first["sender_id"] == "alice" and first["timestamp"]
    second = await next_of(page, "typing")
    assert second["is_typing"] is False  # the repeat in between was not passed on
    with pytest.raises(TimeoutError):
        await next_of(bot, "typing", timeout=1.5)  # the sender is not told its own typing

    await page.send(json.dumps({"type": "typing", "is_typing": True}))
    assert (await next_of(bot, "typing"))["is_typing"] is True

    await bot.close()
    left = await next_of(page, "system")
    assert left["event"] == "user_left"
    await page.close()
