"""Daphne's requests skip Twisted's form parsing (sessions_app/daphne_requests.py): a body is
the application's to read. With Twisted's parsing on, a malformed multipart body was answered by
Twisted itself — a bare `400 Bad Request`, no JSON, the connection dropped — before the
application saw it, and a good one was parsed a second time for nothing."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from sessions_app.models import ApiToken
from tests.live import start_daphne


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.django_db(transaction=True)
def test_a_malformed_multipart_body_gets_the_api_s_json_error(tmp_path: Path) -> None:
    owner = get_user_model().objects.create_user("gateway")
    _row, token = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    server = start_daphne(tmp_path)
    try:
        body = b"this is not a multipart body"
        head = (
            "POST /api/v1/session/create HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: multipart/form-data; boundary=zzz\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        answer = _exchange(server.port, head.encode() + body)
    finally:
        server.stop()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert b"Content-Type: application/json" in rest, answer[:300]
    assert b"Send the request body as JSON" in rest, answer[:300]


def test_twisted_formats_no_second_access_log_line() -> None:
    """Daphne's factory writes no Twisted combined-log line (daphne logs the request itself)."""
    from daphne.http_protocol import HTTPFactory

    from sessions_app import daphne_requests

    daphne_requests.apply()
    factory = HTTPFactory(server=None)
    formatted: list[object] = []
    factory._logFormatter = lambda *args: formatted.append(args) or "line"
    factory._logFile = io.StringIO()
    factory.log(object())
    assert formatted == [] and factory._logFile.getvalue() == ""
