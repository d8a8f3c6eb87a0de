"""Issue 11: the rule for sessions a service token opens, as the README now states it.

DESIGN.md §1: a queued session not seen for the grace is abandoned, whoever opened it (the
earlier service's client polled its position every 5 s); an active session opened through the
API, with no page ever attached, ends only by close or idle expiry. A queued client that never
polls could not even learn that its turn came, so its place goes to people still waiting.
"""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ApiToken, ChatSession

pytestmark = pytest.mark.django_db
GRACE = 2  # seconds, written straight to Redis (staff may not set one this short)


def test_token_sessions_wait_only_while_polled_and_once_active_end_by_close_or_idle() -> None:
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 1})
    owner = get_user_model().objects.create_user("gateway")
    _row, raw = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def create(user_id: str) -> dict[str, object]:
        answer = client.post(
            "/api/v1/session/create", json.dumps({"user_id": user_id}), "application/json"
        )
        assert answer.status_code == 201
        return answer.json()

    active = create("seated")
    polled = create("polls")
    silent = create("never-polls")
    assert (active["status"], polled["status"], silent["status"]) == ("active", "queued", "queued")
    manager.client.hset(manager.keys.config, mapping={"grace": GRACE})

    deadline = time.monotonic() + GRACE + 1.5
    while time.monotonic() < deadline:
        # The earlier client's habit (every 5 s; faster here, since the grace is short).
        position = client.get("/api/v1/session/position/polls")
        assert position.status_code == 200 and position.json()["position"] == 1
        time.sleep(0.5)
    swept = services.sessions_sweep()

    assert swept.abandoned == [silent["session_id"]]
    record = ChatSession.objects.get(id=silent["session_id"])
    assert (record.state, record.close_reason) == ("closed", "abandoned")
    # The active one was never polled and is kept: it ends by close or idle expiry only.
    assert ChatSession.objects.get(id=active["session_id"]).state == "active"
    assert client.get("/api/v1/session/position/seated").json()["status"] == "active"
    assert ChatSession.objects.get(id=polled["session_id"]).state == "queued"
