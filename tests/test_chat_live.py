"""`/ws/chat/` through real daphne processes on loopback: origin and login checks before accept,
the frame size limit, and two processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatMessage
from tests.live import DaphneServer, start_daphne

pytestmark = [pytest.mark.timeout(120)]


def login_cookie(username: str) -> str:
    """A real Django session for a new user, as the login form would create it."""
    user = get_user_model().objects.create_user(username=username)
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"sessionid={store.session_key}"


async def open_ws(
    server: DaphneServer, cookie: str | None, origin: str | None = "self"
) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    return await connect(
        f"{server.ws_url}/ws/chat/",
        origin=server.url if origin == "self" else origin,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=10,
        max_size=2**22,
    )


async def next_of(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",  # foreign
        "http://127.0.0.1.evil.example",  # look-alike of an allowed host
        "http://localhost.evil.example",
        None,  # missing
    ],
)
async def test_foreign_lookalike_and_missing_origins_are_refused(
    daphne_server: DaphneServer, origin: str | None
) -> None:
    cookie = await sync_to_async(login_cookie)("alice")
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(daphne_server, cookie, origin=origin)
    assert refused.value.response.status_code == 403
    assert get_manager().counts()["active"] == 0  # nothing was opened


async def test_anonymous_is_refused_and_a_logged_in_person_is_answered(
    daphne_server: DaphneServer,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(daphne_server, None)
    assert refused.value.response.status_code == 403
    cookie = await sync_to_async(login_cookie)("alice")
    ws = await open_ws(daphne_server, cookie)
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["type"] == "queue.status" and first["state"] == "active"
    await ws.close()


async def test_frames_over_64_kib_close_the_socket(daphne_server: DaphneServer) -> None:
    cookie = await sync_to_async(login_cookie)("alice")
    ws = await open_ws(daphne_server, cookie)
    await next_of(ws, "queue.status")
    await ws.send(json.dumps({"type": "message", "content": "x" * 70_000}))
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    # Autobahn fails the connection (1009, or a dropped TCP connection without a close frame).
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    assert not await sync_to_async(ChatMessage.objects.exists)()
    again = await open_ws(daphne_server, cookie)  # the person is not harmed: same session
    assert (await next_of(again, "queue.status"))["state"] == "active"
    await again.close()


async def test_the_consumer_refuses_frames_over_its_own_limit(
    transactional_db: None, tmp_path: Path
) -> None:
    server = start_daphne(tmp_path, "small", MAX_MESSAGE_BYTES="2000")
    try:
        cookie = await sync_to_async(login_cookie)("alice")
        ws = await open_ws(server, cookie)
        await next_of(ws, "queue.status")
        await ws.send(json.dumps({"type": "message", "content": "y" * 3000}))
        error = await next_of(ws, "error")
        assert error["code"] == "TOO_LARGE"
        await ws.send(json.dumps({"type": "heartbeat"}))  # the socket stays open
        assert (await next_of(ws, "queue.status"))["state"] == "active"
        await ws.close()
    finally:
        server.stop()


async def test_a_close_on_one_process_promotes_a_person_on_another(
    daphne_server: DaphneServer, tmp_path: Path
) -> None:
    other = start_daphne(tmp_path, "b")
    try:
        get_manager().set_limits({"max_active_sessions": 1})
        alice, bob, carol = [
            await sync_to_async(login_cookie)(name) for name in ("alice", "bob", "carol")
        ]
        a = await open_ws(daphne_server, alice)
        assert (await next_of(a, "queue.status"))["state"] == "active"
        b = await open_ws(other, bob)
        assert (await next_of(b, "queue.status"))["position"] == 1
        c = await open_ws(other, carol)
        assert (await next_of(c, "queue.status"))["position"] == 2
        await asyncio.sleep(0.5)  # let process B's registry settle after the arrivals
        await a.send(json.dumps({"type": "leave"}))
        assert (await next_of(a, "session.closed"))["reason"] == "user"
        activated = await next_of(b, "session.activated")
        assert activated["session_id"]
        moved = await next_of(c, "queue.status")
        assert (moved["state"], moved["position"], moved["ahead"]) == ("queued", 1, 0)
        # Bob, promoted on process B, can chat there at once.
        await b.send(json.dumps({"type": "message", "content": "hello from B"}))
        end = await next_of(b, "stream_end")
        assert end["status"] == "done"
        for ws in (a, b, c):
            await ws.close()
    finally:
        other.stop()


async def test_a_killed_process_stops_renewing_presence_so_the_place_is_freed(
    transactional_db: None, tmp_path: Path
) -> None:
    # Staff may not set a grace this short (conf.LIMIT_BOUNDS); the test sets the live value
    # in Redis directly so as not to wait two minutes.
    await sync_to_async(get_manager().set_limits)({"disconnect_grace_seconds": 5})
    doomed = start_daphne(tmp_path, "doomed")
    cookie = await sync_to_async(login_cookie)("alice")
    ws = await open_ws(doomed, cookie)
    status = await next_of(ws, "queue.status")
    assert status["state"] == "active"
    doomed.kill()  # SIGKILL: no disconnect handler runs, nothing is cleaned up
    await asyncio.sleep(6)  # past the grace: nobody renews the page's presence any more
    swept = await sync_to_async(services.sessions_sweep)()
    assert status["session_id"] in swept.abandoned
    assert get_manager().counts()["active"] == 0


# --- the page's JSON fallback (Django's test client; no socket needed) ------------------------


@pytest.mark.django_db(transaction=True)
def test_fallback_endpoints_answer_json_and_never_redirect(client: Any) -> None:
    for method, url in (
        ("get", "/chat/status"),
        ("post", "/chat/session"),
        ("post", "/chat/leave"),
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert client.get("/").status_code == 302  # the page itself goes to the login form


@pytest.mark.django_db(transaction=True)
def test_fallback_opens_polls_and_leaves(client: Any) -> None:
    services.limits_set(actor=None, max_active_sessions=1)
    holder = get_user_model().objects.create_user(username="holder")
    services.session_open(user=holder, via="page")
    bob = get_user_model().objects.create_user(username="bob")
    client.force_login(bob)
    assert client.get("/chat/status").json()["state"] == "none"
    opened = client.post("/chat/session").json()
    assert (opened["state"], opened["position"]) == ("queued", 1)
    polled = client.get("/chat/status").json()
    assert polled["session_id"] == opened["session_id"] and polled["version"] > opened["version"]
    assert client.get("/chat/session").status_code == 405
    page = client.get("/")
    assert page.status_code == 200 and b'id="queue-banner"' in page.content
    assert client.post("/chat/leave").json()["state"] == "closed"
    assert client.get("/chat/status").json()["state"] == "none"
    assert get_manager().counts()["queued"] == 0
