"""`POST /api/chat/sessions/<id>/messages` (and the stream's refusals) through a real daphne:
every status code, the seat rules (a token takes the seat, a queued person hears where they
stand), another person's ids as 404, and the answer in the history and on the open page."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.middleware.csrf import _get_new_csrf_string

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage, ChatSession
from sessions_app.ratelimit import rate_check
from tests.chat_http import Person, login_cookie_for, person
from tests.live import DaphneServer
from tests.test_chat_live import next_of, open_ws

pytestmark = [pytest.mark.timeout(180)]


def send_path(who: Person | str, stream: bool = False) -> str:
    conversation_id = who if isinstance(who, str) else who.conversation_id
    tail = "/stream" if stream else ""
    return f"/api/chat/sessions/{conversation_id}/messages{tail}"


def client(server: DaphneServer, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=20, **kwargs)


async def answered(server: DaphneServer, who: Person, timeout: float = 20) -> dict[str, Any]:
    """The conversation's newest answer once it has ended."""
    deadline = time.monotonic() + timeout
    async with client(server, headers=who.auth) as http:
        while True:
            page = (await http.get(send_path(who))).json()
            last = page["messages"][-1]
            ended = last["status"] not in ("pending", "streaming")
            if last["sender_type"] == "assistant" and ended:
                return last
            assert time.monotonic() < deadline, page
            await asyncio.sleep(0.1)


async def test_a_token_takes_the_seat_and_the_answer_is_recorded(
    daphne_server: DaphneServer,
) -> None:
    alice = await sync_to_async(person)("alice")
    async with client(daphne_server, headers=alice.auth) as http:
        sent = await http.post(
            send_path(alice), json={"content": "no page open", "message_type": "text"}
        )
    assert sent.status_code == 201, sent.text
    body = sent.json()
    assert body["status"] == "sent" and body["created_at"] and body["message_id"] > 0
    answer = await answered(daphne_server, alice)
    assert answer["message_id"] == body["answer_id"] and answer["status"] == "done"
    assert answer["content"] == "Echo: no page open" and answer["metadata"]["tokens_used"] == 4
    seat = await sync_to_async(ChatSession.objects.get)(user=alice.user)
    assert seat.opened_via == "api" and seat.state == "active"


async def test_an_http_question_appears_on_the_open_page(daphne_server: DaphneServer) -> None:
    alice = await sync_to_async(person)("alice")
    page = await open_ws(daphne_server, await sync_to_async(login_cookie_for)(alice.user))
    await next_of(page, "queue.status")
    async with client(daphne_server, headers=alice.auth) as http:
        sent = (await http.post(send_path(alice), json={"content": "from a program"})).json()
    shown = await next_of(page, "message")
    assert shown["message_id"] == sent["message_id"] and shown["content"] == "from a program"
    assert shown["sender_type"] == "user" and shown["sender_id"] == "alice"
    end = await next_of(page, "stream_end")
    assert end["message_id"] == sent["answer_id"] and end["status"] == "done"
    await page.close()


async def test_a_queued_person_gets_409_with_position_and_eta(daphne_server: DaphneServer) -> None:
    get_manager().set_limits({"max_active_sessions": 1})
    bob = await sync_to_async(person)("bob")
    await sync_to_async(services.session_open)(user=bob.user, via="api")
    alice = await sync_to_async(person)("alice")
    async with client(daphne_server, headers=alice.auth) as http:
        for stream in (False, True):
            refused = await http.post(send_path(alice, stream), json={"content": "me too?"})
            assert refused.status_code == 409, refused.text
            error = refused.json()["error"]
            assert error["code"] == "QUEUED" and error["position"] == 1
            assert "eta_seconds" in error
    assert not await sync_to_async(ChatMessage.objects.exists)()  # nothing recorded


async def test_a_browser_without_a_seat_gets_409_no_seat(daphne_server: DaphneServer) -> None:
    alice = await sync_to_async(person)("alice")
    cookie = await sync_to_async(login_cookie_for)(alice.user)
    csrf = _get_new_csrf_string()
    headers = {"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf}
    async with client(daphne_server, headers=headers) as http:
        refused = await http.post(send_path(alice), json={"content": "hi"})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "NO_SEAT" and error["position"] is None
    assert await sync_to_async(services.session_live_for_user)(alice.user) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "BAD_REQUEST"),
        ({"content": "   "}, "BAD_REQUEST"),
        ({"content": 5}, "BAD_REQUEST"),
        ({"content": "x" * 8001}, "TOO_LARGE"),
        ({"content": "hi", "message_type": "file"}, "BAD_REQUEST"),
        ({"content": "hi", "metadata": ["not", "an", "object"]}, "BAD_REQUEST"),
        ({"content": "hi", "metadata": {"pad": "x" * 20_000}}, "BAD_REQUEST"),
        ("not json", "BAD_REQUEST"),
    ],
)
async def test_bad_bodies_are_400(daphne_server: DaphneServer, body: Any, code: str) -> None:
    alice = await sync_to_async(person)("alice")
    async with client(daphne_server, headers=alice.auth) as http:
        for stream in (False, True):
            if isinstance(body, str):
                response = await http.post(
                    send_path(alice, stream),
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            else:
                response = await http.post(send_path(alice, stream), json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == code
    assert not await sync_to_async(ChatMessage.objects.exists)()


async def test_auth_ownership_and_method_errors(daphne_server: DaphneServer) -> None:
    alice = await sync_to_async(person)("alice")
    bob = await sync_to_async(person)("bob")
    ok = {"content": "hi"}
    async with client(daphne_server) as http:
        for stream in (False, True):
            path = send_path(alice, stream)
            assert (await http.post(path, json=ok)).status_code == 401
            bad = await http.post(path, json=ok, headers={"Authorization": "Bearer cg_nope"})
            assert bad.status_code == 401 and bad.json()["error"]["code"] == "INVALID_TOKEN"
            # Another person's conversation, and no conversation at all: the same 404.
            for target in (send_path(bob, stream), send_path("not-a-uuid", stream)):
                missing = await http.post(target, json=ok, headers=alice.auth)
                assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
            # A token without the act-for-users right may not name someone else.
            named = await http.post(f"{path}?user_id=bob", json=ok, headers=alice.auth)
            assert named.status_code == 403
        cookie = await sync_to_async(login_cookie_for)(alice.user)
        no_csrf = await http.post(send_path(alice), json=ok, headers={"Cookie": cookie})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "CSRF_FAILED"
        put = await http.put(send_path(alice), json=ok, headers=alice.auth)
        assert put.status_code == 405 and put.headers["allow"] == "GET, POST"
        get_stream = await http.get(send_path(alice, True), headers=alice.auth)
        assert get_stream.status_code == 405 and get_stream.headers["allow"] == "POST"
    assert not await sync_to_async(ChatMessage.objects.exists)()


async def test_too_many_questions_are_429(daphne_server: DaphneServer) -> None:
    alice = await sync_to_async(person)("alice")
    for _ in range(30):  # the person's budget for this minute (CHAT_RATE_PER_MINUTE)
        await sync_to_async(rate_check)(scope="chat", ident=str(alice.user.pk), limit=30)
    async with client(daphne_server, headers=alice.auth) as http:
        refused = await http.post(send_path(alice), json={"content": "one more"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMIT"
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_service_token_asks_for_a_person_it_may_act_for(
    daphne_server: DaphneServer,
) -> None:
    service = await sync_to_async(person)("service", can_act_for_users=True)
    bob = await sync_to_async(person)("bob")
    async with client(daphne_server, headers=service.auth) as http:
        sent = await http.post(f"{send_path(bob)}?user_id=bob", json={"content": "for bob"})
        assert sent.status_code == 201, sent.text
        # The service's own conversation id is not bob's: 404, as for anyone else's.
        other = await http.post(f"{send_path(service)}?user_id=bob", json={"content": "x"})
        assert other.status_code == 404
        unknown = await http.post(f"{send_path(bob)}?user_id=nobody", json={"content": "x"})
        assert unknown.status_code == 404
    answer = await answered(daphne_server, bob)
    assert answer["content"] == "Echo: for bob"
    seat = await sync_to_async(ChatSession.objects.get)(user=bob.user)
    assert seat.opened_via == "api"
