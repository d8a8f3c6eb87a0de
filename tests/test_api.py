"""The JSON API (sessions_app/api/) end to end through Django's test client and a real Redis.

Every endpoint and every status code the contract names; browser writes run with
`enforce_csrf_checks=True`; a person can neither see nor close another person's session.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.utils import timezone

from sessions_app.gate import admission
from sessions_app.gate.admission import get_manager
from sessions_app.models import ApiToken, ChatSession

pytestmark = pytest.mark.django_db
API = "/api/v1"


def make_user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username=username, password="pw-123456!", **extra)


class TokenClient:
    """A service client: every request carries `Authorization: Bearer <token>`."""

    def __init__(self, raw: str) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    def create(self, **body: Any) -> Any:
        return self.client.post(
            f"{API}/session/create", json.dumps(body), "application/json", **self.headers
        )

    def close(self, user_id: str) -> Any:
        return self.client.delete(f"{API}/session/close/{user_id}", **self.headers)

    def position(self, user_id: str) -> Any:
        return self.client.get(f"{API}/session/position/{user_id}", **self.headers)

    def get(self, path: str) -> Any:
        return self.client.get(f"{API}{path}", **self.headers)

    def post(self, path: str) -> Any:
        return self.client.post(f"{API}{path}", **self.headers)


def browser(user: Any) -> tuple[Client, dict[str, str]]:
    """A logged-in browser that enforces CSRF, and the header that passes the check."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    return client, {"HTTP_X_CSRFTOKEN": secret}


@pytest.fixture
def limit():
    def set_limit(n: int) -> None:
        get_manager().set_limits({"max_active_sessions": n})

    return set_limit


@pytest.fixture
def service() -> TokenClient:
    owner = make_user("svc-owner")
    _row, raw = ApiToken.issue(name="svc", owner=owner, can_act_for_users=True)
    return TokenClient(raw)


@pytest.fixture
def own_only() -> TokenClient:
    owner = make_user("bot")
    _row, raw = ApiToken.issue(name="bot", owner=owner, can_act_for_users=False)
    return TokenClient(raw)


def error_of(response: Any) -> dict[str, str]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["error"]


# --- create / position / close -----------------------------------------------------------------


def test_create_is_201_then_200_with_the_same_gate_owned_session(service, limit):
    limit(5)
    first = service.create(user_id="alice", session_id="my-ref-1")
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "active" and body["created"] is True
    assert body["client_session_id"] == "my-ref-1"
    assert body["session_id"] != "my-ref-1" and len(body["session_id"]) == 36
    again = service.create(user_id="alice")
    assert again.status_code == 200
    assert again.json()["session_id"] == body["session_id"]
    assert again.json()["client_session_id"] == "my-ref-1"
    record = ChatSession.objects.get(id=body["session_id"])
    assert record.opened_via == "api" and record.client_session_id == "my-ref-1"


def test_act_for_users_provisions_an_unknown_person_without_a_usable_password(service):
    response = service.create(user_id="new.person@example")
    assert response.status_code == 201
    user = get_user_model().objects.get(username="new.person@example")
    assert not user.has_usable_password()


def test_queue_positions_promotion_and_close(service, limit):
    limit(1)
    assert service.create(user_id="a").json()["status"] == "active"
    queued = service.create(user_id="b")
    assert queued.status_code == 201
    assert queued.json()["status"] == "queued" and queued.json()["position"] == 1
    assert queued.json()["eta_seconds"] >= 1
    service.create(user_id="c")
    where = service.position("c").json()
    assert where["status"] == "queued" and where["position"] == 2 and where["ahead"] == 1

    closed = service.close("a")
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed" and closed.json()["promoted"] == 1
    assert service.position("b").json() == {
        "status": "active",
        "session_id": queued.json()["session_id"],
    }
    assert service.position("c").json()["position"] == 1
    assert ChatSession.objects.get(id=queued.json()["session_id"]).state == "active"

    again = service.close("a")
    assert again.status_code == 404
    assert error_of(again)["code"] == "NOT_FOUND"


def test_position_and_close_of_unknown_people_are_404(service):
    assert service.position("nobody").status_code == 404
    assert service.close("nobody").status_code == 404
    make_user("idle")
    response = service.position("idle")
    assert response.status_code == 404
    assert "no live session" in error_of(response)["message"]
    # A malformed name in a path is simply no such resource.
    assert service.position("bad name!").status_code == 404


def test_a_second_client_reference_for_a_live_session_is_a_conflict(service):
    assert service.create(user_id="dana", session_id="conv-1").status_code == 201
    conflict = service.create(user_id="dana", session_id="conv-2")
    assert conflict.status_code == 409
    error = error_of(conflict)
    assert error["code"] == "SESSION_CONFLICT" and error["client_session_id"] == "conv-1"
    assert service.create(user_id="dana", session_id="conv-1").status_code == 200


def test_a_token_without_act_for_users_acts_only_for_its_owner(own_only, limit):
    limit(5)
    assert own_only.create().status_code == 201
    assert own_only.create(user_id="bot").status_code == 200
    refused = own_only.create(user_id="somebody")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "FORBIDDEN"
    assert not get_user_model().objects.filter(username="somebody").exists()
    assert own_only.position("bot").json()["status"] == "active"
    make_user("other")
    assert own_only.position("other").status_code == 403
    assert own_only.close("other").status_code == 403
    assert own_only.close("bot").status_code == 200


def test_token_use_is_recorded(service):
    row = ApiToken.objects.get(name="svc")
    assert row.last_used_at is None
    service.get("/session/status")
    row.refresh_from_db()
    assert row.last_used_at is not None


# --- browsers ----------------------------------------------------------------------------------


def test_browser_writes_need_the_csrf_token(limit):
    limit(5)
    alice = make_user("alice")
    client, csrf = browser(alice)
    refused = client.post(f"{API}/session/create", "{}", "application/json")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "CSRF_FAILED"
    created = client.post(f"{API}/session/create", "{}", "application/json", **csrf)
    assert created.status_code == 201
    # A browser's session is a page's: it is released when no page is open for the grace.
    assert ChatSession.objects.get(id=created.json()["session_id"]).opened_via == "page"
    assert client.get(f"{API}/session/position/alice").json()["status"] == "active"
    assert client.delete(f"{API}/session/close/alice").status_code == 403
    closed = client.delete(f"{API}/session/close/alice", **csrf)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"


def test_a_person_cannot_see_or_close_another_persons_session(service):
    assert service.create(user_id="bob").status_code == 201
    mallory = make_user("mallory")
    client, csrf = browser(mallory)
    seen = client.get(f"{API}/session/position/bob")
    assert seen.status_code == 403 and "only on your own" in error_of(seen)["message"]
    assert client.delete(f"{API}/session/close/bob", **csrf).status_code == 403
    as_other = client.post(
        f"{API}/session/create", json.dumps({"user_id": "bob"}), "application/json", **csrf
    )
    assert as_other.status_code == 403
    assert service.position("bob").json()["status"] == "active"  # untouched


def test_anonymous_callers_get_json_401_never_a_login_redirect():
    client = Client()
    for response in (
        client.post(f"{API}/session/create", "{}", "application/json"),
        client.get(f"{API}/session/status"),
        client.get(f"{API}/session/position/x"),
        client.delete(f"{API}/session/close/x"),
        client.post(f"{API}/session/cleanup"),
    ):
        assert response.status_code == 401
        assert error_of(response)["code"] == "UNAUTHENTICATED"
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_bad_tokens_are_401_even_with_a_logged_in_cookie():
    owner = make_user("owner")
    row, raw = ApiToken.issue(name="old", owner=owner)
    row.revoked_at = timezone.now()
    row.save()
    client = Client()
    client.force_login(owner)
    for header in (f"Bearer {raw}", "Bearer cg_not-a-token", "Basic dXNlcjpwYXNz", "Bearer"):
        response = client.get(f"{API}/session/status", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert error_of(response)["code"] in ("INVALID_TOKEN", "UNAUTHENTICATED")


# --- status, cleanup, errors -------------------------------------------------------------------


def test_status_counts_for_everyone_lists_for_staff_and_tokens(service, limit):
    limit(1)
    service.create(user_id="a")
    service.create(user_id="b")
    person, _csrf = browser(make_user("plain"))
    counts = person.get(f"{API}/session/status").json()
    assert counts["active_sessions"] == 1 and counts["queue_length"] == 1
    assert counts["max_active_sessions"] == 1 and counts["admissions_paused"] is False
    assert {"in_flight_queries", "max_concurrent_queries"} <= set(counts)
    assert "queue" not in counts and "active" not in counts

    full = service.get("/session/status").json()
    assert [e["user_id"] for e in full["active"]] == ["a"]
    assert [(e["position"], e["user_id"]) for e in full["queue"]] == [(1, "b")]
    staff, _ = browser(make_user("boss", is_staff=True))
    assert staff.get(f"{API}/session/status").json()["queue"][0]["user_id"] == "b"
    assert service.get("/session/status?limit=0").status_code == 400


def test_cleanup_is_for_staff_and_tokens(service):
    person, csrf = browser(make_user("plain"))
    refused = person.post(f"{API}/session/cleanup", **csrf)
    assert refused.status_code == 403
    done = service.post("/session/cleanup")
    assert done.status_code == 200
    assert done.json() == {"expired": 0, "abandoned": 0, "promoted": 0, "reclaimed_leases": 0}
    staff, staff_csrf = browser(make_user("boss", is_staff=True))
    assert staff.post(f"{API}/session/cleanup").status_code == 403  # CSRF still applies
    assert staff.post(f"{API}/session/cleanup", **staff_csrf).status_code == 200


def test_cleanup_expires_idle_sessions(service, limit):
    limit(1)
    service.create(user_id="a")
    service.create(user_id="b")
    manager = get_manager()
    manager.set_limits({"idle_timeout_seconds": 10})
    # Move a's last activity into the past rather than waiting ten seconds.
    manager.client.zadd(manager.keys.active, {manager.session_of_user(_pk("a")): 1.0})
    result = service.post("/session/cleanup").json()
    assert result["expired"] == 1 and result["promoted"] == 1
    assert service.position("b").json()["status"] == "active"


def _pk(username: str) -> str:
    return str(get_user_model().objects.get(username=username).pk)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"user_id": 7}), "user_id must be a string"),
        (json.dumps({"user_id": "two words"}), "user_id must be a username"),
        (json.dumps({"session_id": "x" * 201}), "at most 200"),
    ],
)
def test_malformed_create_bodies_are_400(service, body, fragment):
    response = service.client.post(
        f"{API}/session/create", body, "application/json", **service.headers
    )
    assert response.status_code == 400
    assert fragment in error_of(response)["message"]


def test_an_oversized_body_is_a_json_400(service):
    body = json.dumps({"session_id": "x" * 70_000})
    response = service.client.post(
        f"{API}/session/create", body, "application/json", **service.headers
    )
    assert response.status_code == 400 and error_of(response)["code"] == "TOO_LARGE"


def test_wrong_methods_are_json_405_with_allow(service):
    response = service.get("/session/create")
    assert response.status_code == 405
    assert response["Allow"] == "POST" and error_of(response)["code"] == "METHOD_NOT_ALLOWED"
    put = service.client.put(f"{API}/session/position/a", **service.headers)
    assert put.status_code == 405 and put["Allow"] == "GET"


def test_unknown_api_paths_are_json_404():
    for path in ("/nope", "/session/create/", "/session/close/"):
        response = Client().get(f"{API}{path}")
        assert response.status_code == 404 and error_of(response)["code"] == "NOT_FOUND"


def test_create_is_rate_limited_per_person_and_per_token(service, settings):
    settings.CHATGATE = {**settings.CHATGATE, "API_CREATE_RATE_PER_MINUTE": 2}
    assert service.create(user_id="eve").status_code == 201
    assert service.create(user_id="eve").status_code == 200
    limited = service.create(user_id="eve")
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "RATE_LIMIT"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert service.create(user_id="frank").status_code == 201  # another person is not limited

    settings.CHATGATE = {**settings.CHATGATE, "API_TOKEN_CREATE_RATE_PER_MINUTE": 4}
    token_limited = service.create(user_id="gina")
    assert token_limited.status_code == 429 and "this token" in error_of(token_limited)["message"]
    # The per-token check comes first: no account is provisioned for a refused call.
    assert not get_user_model().objects.filter(username="gina").exists()


def test_redis_unreachable_is_503_with_retry_after(service, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    admission.reset_manager()
    for response in (
        service.create(user_id="a"),
        service.get("/session/status"),
        service.position("svc-owner"),
    ):
        assert response.status_code == 503
        assert error_of(response)["code"] == "UNAVAILABLE"
        assert response["Retry-After"] == "5"


def test_openapi_document_describes_every_endpoint():
    response = Client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/session/create",
        "/session/close/{user_id}",
        "/session/status",
        "/session/position/{user_id}",
        "/session/cleanup",
    }
    assert doc["servers"][0]["url"].endswith("/api/v1")


def test_an_unexpected_failure_is_a_json_500_not_an_html_page(service, monkeypatch):
    # Failure injection: the wrapper under test is what turns any exception into JSON.
    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("sessions_app.gate.selectors.gate_snapshot", broken)
    response = service.get("/session/status")
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "INTERNAL",
        "message": "Something went wrong on our side.",
    }
