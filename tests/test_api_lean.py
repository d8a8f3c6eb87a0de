"""The lean handler for service-token calls to the v1 session API (issue 11, P9): one hop to the
API pool per request, and the same answers as the full handler.

The requests go through the project's real ASGI application in this process (what daphne
calls), next to the Django test client, which takes the full middleware chain.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sessions_app.gate import services
from sessions_app.metrics import tally
from sessions_app.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = "/api/v1/session/create"
# What both handlers must agree on, besides the status and the JSON body.
COMPARED = (
    "content-type",
    "cache-control",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "www-authenticate",
    "retry-after",
    "allow",
)


def _asgi(
    method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """One request through config.asgi.application, as daphne would make it."""
    from config.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the answer is made
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    start = sent[0]
    got = {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], got, content


def _token(act_for_users: bool = True) -> str:
    owner = get_user_model().objects.create_user("gateway")
    _row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=act_for_users)
    return raw


def test_the_whole_request_runs_on_one_api_pool_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread is started for the request (Django's ASGI handler starts one per request), and
    the middleware and the view run on the same pool thread: one crossing."""
    raw = _token()
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {raw}"}
    _asgi("POST", CREATE, json.dumps({"user_id": "warm"}).encode(), headers)  # pool started

    seen: dict[str, str] = {}
    real_open, real_add = services.session_open, tally.add

    def spy_open(**kwargs: Any) -> Any:
        seen["view"] = threading.current_thread().name
        return real_open(**kwargs)

    def spy_add(**kwargs: Any) -> None:
        seen["middleware"] = threading.current_thread().name
        real_add(**kwargs)

    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(services, "session_open", spy_open)
    monkeypatch.setattr(tally, "add", spy_add)
    monkeypatch.setattr(threading.Thread, "start", counting_start)
    status, _headers, body = _asgi("POST", CREATE, json.dumps({"user_id": "ada"}).encode(), headers)
    assert status == 201, body
    assert seen["view"].startswith("api"), seen
    assert seen["middleware"] == seen["view"], "the middleware ran on another thread"
    # The API pool may still grow to API_CONCURRENCY (a thread that just answered is marked
    # idle a moment after its answer is out, so the next request can find none idle); Django's
    # ASGI handler started a thread of its own for every request.
    assert all(name.startswith("api") for name in started), f"threads started: {started}"


@pytest.mark.parametrize(
    ("method", "body", "extra"),
    [
        ("POST", {"user_id": "ada"}, {}),  # the person's session already exists: 200, same id
        ("POST", {"user_id": "ada", "session_id": "other-ref"}, {}),  # 409 SESSION_CONFLICT
        ("POST", {"user_id": 7}, {}),  # 400
        ("POST", {"user_id": "ｗ0002"}, {}),  # 400, not NFKC
        ("POST", b"{not json", {}),  # 400
        ("POST", {"user_id": "ada"}, {"Authorization": "Bearer cg_unknown"}),  # 401
        ("POST", {"user_id": "ada"}, {"Authorization": "Basic abc"}),  # 401
        ("GET", None, {}),  # 405 with Allow
        ("POST", {"user_id": "ada"}, {"Host": "evil.example"}),  # 400 DisallowedHost
    ],
)
def test_a_token_call_answers_as_the_full_handler_does(
    method: str, body: Any, extra: dict[str, str]
) -> None:
    raw = _token()
    first = Client().post(
        CREATE, {"user_id": "ada"}, "application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert first.status_code == 201
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {raw}", **extra}
    payload = (
        body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    )
    if payload:
        headers["Content-Type"] = "application/json"

    full = Client().generic(
        method,
        CREATE,
        payload,
        headers.get("Content-Type", ""),
        HTTP_AUTHORIZATION=headers["Authorization"],
        HTTP_HOST=headers["Host"],
    )
    status, lean_headers, content = _asgi(method, CREATE, payload, headers)

    assert status == full.status_code
    if full["Content-Type"].startswith("application/json"):
        assert json.loads(content) == full.json()
    else:
        assert content == full.content
    for name in COMPARED:
        assert lean_headers.get(name) == full.headers.get(name), name
