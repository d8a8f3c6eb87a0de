"""The fan-out's cheap frame path (issue 11, P3): the queued `queue.status` built as text is the
same frame as before, it reaches daphne past Channels' session wrapper, and autobahn's per-frame
log colouring is off under daphne."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessions_app import daphne_frames
from sessions_app.consumers.base import GuardedJsonConsumer
from sessions_app.fanout import queued_text, status_frame
from sessions_app.gate.selectors import SessionStatus


@pytest.mark.parametrize(
    ("session_id", "place", "eta_seconds", "paused"),
    [
        ("0f3c9a1e2b7d4c5f8a6e1d2c3b4a5f60", 1, 60, False),
        ("0f3c9a1e2b7d4c5f8a6e1d2c3b4a5f60", 9_999, None, True),
        ('odd "id" \\ with 한국어', 42, 1, False),  # quoted exactly as json.dumps would
    ],
)
def test_queued_text_is_the_status_frame(
    session_id: str, place: int, eta_seconds: int | None, paused: bool
) -> None:
    status = SessionStatus("queued", session_id, place, place - 1, eta_seconds, paused)
    text = queued_text(session_id, place, eta_seconds, paused, 1_764_587_000_123)
    assert json.loads(text) == status_frame(status, 1_764_587_000_123)
    assert list(json.loads(text)) == list(status_frame(status, 1))  # same key order


async def test_send_encoded_goes_past_the_session_wrapper() -> None:
    from channels.sessions import InstanceSessionWrapper

    sent: list[dict[str, Any]] = []

    async def server_send(message: dict[str, Any]) -> None:
        sent.append(message)

    wrapper = InstanceSessionWrapper({"cookies": {}}, server_send)
    consumer = GuardedJsonConsumer()
    consumer.base_send = wrapper.send
    # The wrapper reads the session on every message it passes; this one must not reach it.
    wrapper.scope["session"] = None
    await consumer.send_encoded('{"type":"queue.status"}')
    assert sent == [{"type": "websocket.send", "text": '{"type":"queue.status"}'}]


async def test_send_encoded_to_a_closed_socket_is_no_error() -> None:
    async def gone(message: dict[str, Any]) -> None:
        raise RuntimeError("Attempt to send on a closed protocol")

    consumer = GuardedJsonConsumer()
    consumer.base_send = gone
    await consumer.send_encoded("{}")  # dropped quietly, as send_frame does


def test_autobahn_log_decoration_is_plain_under_daphne() -> None:
    import autobahn.util
    import autobahn.websocket.protocol as ws_protocol

    daphne_frames.apply()
    assert autobahn.util.hl("peer") == "peer"  # plain text: no click.style per frame
    # What sendData builds for its debug line on every frame: the same words, no inspection.
    method = ws_protocol.WebSocketProtocol.sendData
    assert ws_protocol.hltype(method) == "<WebSocketProtocol.sendData>"
    assert ws_protocol.hlval(200) == "200"
