"""`/ws/console/`: staff only (refused before accept), live within a second, coalesced.

The consumer runs under channels' WebsocketCommunicator with the real Redis channel layer, so
a change made through a service reaches it exactly as in production: on commit, through
`notifications.console_changed` and a Redis group. Transactional, because the consumer reads
the database from its own thread and the notifications are sent on commit.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from config.asgi import application
from sessions_app.console.live import MIN_INTERVAL_SECONDS, ConsoleConsumer
from sessions_app.gate import services
from sessions_app.models import GateSettings

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@database_sync_to_async
def make_user(username: str, *, staff: bool = False) -> Any:
    return get_user_model().objects.create_user(
        username=username, password="pw-123456!", is_staff=staff
    )


@database_sync_to_async
def open_session(username: str) -> str:
    user = get_user_model().objects.create_user(username=username, password="pw-123456!")
    return services.session_open(user=user, via="api").session_id


@database_sync_to_async
def close_session(session_id: str, actor: Any) -> None:
    services.session_close(session_id=session_id, reason="admin", actor=actor, note="test")


def communicator_for(user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(ConsoleConsumer.as_asgi(), "/ws/console/")
    communicator.scope["user"] = user
    return communicator


async def next_update(communicator: WebsocketCommunicator, timeout: float = 1.0) -> dict[str, Any]:
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == "console.update":
            return frame


async def test_anonymous_is_refused_before_accept() -> None:
    communicator = communicator_for(AnonymousUser())
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403
    await communicator.disconnect()


async def test_non_staff_is_refused_before_accept() -> None:
    communicator = communicator_for(await make_user("person"))
    connected, _code = await communicator.connect()
    assert not connected
    await communicator.disconnect()


@database_sync_to_async
def session_cookie(user: Any) -> bytes:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_through_the_real_asgi_stack_only_a_staff_cookie_gets_in() -> None:
    origin = (b"origin", b"http://127.0.0.1")
    for cookie, expected in (
        (b"", False),
        (await session_cookie(await make_user("person")), False),
        (await session_cookie(await make_user("staff", staff=True)), True),
    ):
        communicator = WebsocketCommunicator(
            application, "/ws/console/", headers=[origin, (b"cookie", cookie)]
        )
        connected, _code = await communicator.connect()
        assert connected is expected, cookie
        if connected:
            assert (await next_update(communicator, timeout=5))["type"] == "console.update"
        await communicator.disconnect()


async def test_a_change_reaches_the_console_within_a_second() -> None:
    staff = await make_user("staff", staff=True)
    communicator = communicator_for(staff)
    connected, _code = await communicator.connect()
    assert connected
    try:
        first = await next_update(communicator, timeout=5)  # the first paint, with charts
        assert set(first["fragments"]) == {"gauges", "active", "queue", "audit", "charts"}
        assert "alice" not in first["fragments"]["active"]

        started = time.monotonic()
        sid = await open_session("alice")
        update = await next_update(communicator, timeout=1.0)
        while "alice" not in update["fragments"]["active"]:
            update = await next_update(
                communicator, timeout=max(0.05, 1.0 - (time.monotonic() - started))
            )
        assert time.monotonic() - started < 1.0
        assert f'data-session="{sid}"' in update["fragments"]["active"]
        assert update["version"] > first["version"]

        started = time.monotonic()
        await close_session(sid, staff)
        update = await next_update(communicator, timeout=1.0)
        while sid in update["fragments"]["active"]:
            update = await next_update(
                communicator, timeout=max(0.05, 1.0 - (time.monotonic() - started))
            )
        assert time.monotonic() - started < 1.0
        assert 'data-action="session.close"' in update["fragments"]["audit"]
    finally:
        await communicator.disconnect()


@database_sync_to_async
def open_many(count: int) -> float:
    """Opens `count` sessions back to back; returns how long the burst took."""
    users = [
        get_user_model().objects.create_user(username=f"user{index}", password=None)
        for index in range(count)
    ]
    started = time.monotonic()
    for user in users:
        services.session_open(user=user, via="api")
    return time.monotonic() - started


async def test_a_burst_of_changes_is_coalesced() -> None:
    # Created up front: its first creation pushes the limits, which is itself a change.
    await database_sync_to_async(GateSettings.load)()
    communicator = communicator_for(await make_user("staff", staff=True))
    connected, _code = await communicator.connect()
    assert connected
    try:
        await next_update(communicator, timeout=5)
        # Quiet period: the consumer sends nothing without a change (refresh is seconds away).
        assert await communicator.receive_nothing(timeout=MIN_INTERVAL_SECONDS + 0.1)
        started = time.monotonic()
        burst = await open_many(30)
        frames = []
        # receive_nothing() waits without cancelling the app (a receive timeout would).
        while not await communicator.receive_nothing(timeout=1.0):
            frames.append(await next_update(communicator))
        elapsed = time.monotonic() - started - 1.0  # minus the final quiet second
        # Thirty changes (each also a queue change): at most one frame per interval, and
        # the last frame shows the final state (absolute fragments, nothing lost).
        assert 1 <= len(frames) <= elapsed / MIN_INTERVAL_SECONDS + 2, (len(frames), burst)
        assert len(frames) < 30
        final = frames[-1]["fragments"]
        assert '<span class="count">(20)</span>' in final["active"]
        assert '<span class="count">(10)</span>' in final["queue"]
        shown = final["active"] + final["queue"]
        assert all(f">user{i}<" in shown for i in range(20))  # the first 20 hold the seats
    finally:
        await communicator.disconnect()
