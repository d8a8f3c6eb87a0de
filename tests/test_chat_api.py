"""The conversations API (/api/chat/) through Django's test client with CSRF enforced, on the
real database: every endpoint, every status, another person's ids (404), bad input (400),
never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

from sessions_app.chat import messages
from sessions_app.gate import services
from sessions_app.models import Conversation

pytestmark = pytest.mark.django_db

API = "/api/chat"


class Browser:
    """A logged-in page: cookie + CSRF header on writes."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.client = Client(enforce_csrf_checks=True)
        self.client.force_login(user)
        secret = _get_new_csrf_string()
        self.client.cookies["csrftoken"] = secret
        self.csrf = {"HTTP_X_CSRFTOKEN": secret}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"{API}{path}", params)

    def send(self, method: str, path: str, body: Any = None, csrf: bool = True) -> Any:
        data = body if isinstance(body, str) else json.dumps(body or {})
        return getattr(self.client, method)(
            f"{API}{path}", data, content_type="application/json", **(self.csrf if csrf else {})
        )


@pytest.fixture
def alice() -> Browser:
    return Browser(User.objects.create_user("alice", password="x"))


@pytest.fixture
def bob() -> Browser:
    return Browser(User.objects.create_user("bob", password="x"))


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]["code"]


def talk(user: User, texts: list[str], conversation: Any = None) -> tuple[Any, list[Any]]:
    seat = services.session_open(user=user).session_id
    asked = []
    for text in texts:
        a = messages.message_ask(
            owner=user,
            seat_id=seat,
            content=text,
            conversation_id=str(conversation.pk) if conversation is not None else None,
        )
        conversation = a.conversation
        messages.answer_begin(answer_id=a.answer.pk)
        messages.answer_finish(answer_id=a.answer.pk, content=f"A:{text}", status="done")
        asked.append(a)
    return conversation, asked


def test_create_read_rename_archive_restore_delete(alice):
    r = alice.send("post", "/sessions", {"title": "  Trip to Jeju ", "metadata": {"k": 1}})
    assert r.status_code == 201
    body = r.json()
    sid = body["session_id"]
    assert body["title"] == "Trip to Jeju" and body["status"] == "active"
    assert body["user_id"] == "alice" and len(body["trace_id"]) == 32 and body["created_at"]
    detail = alice.get(f"/sessions/{sid}").json()
    assert (
        detail["message_count"] == 0
        and detail["last_activity"]
        and detail["title"] == "Trip to Jeju"
    )
    r = alice.send("patch", f"/sessions/{sid}", {"title": "제주 여행"})
    assert r.status_code == 200 and r.json()["title"] == "제주 여행"
    assert (
        alice.send("patch", f"/sessions/{sid}", {"status": "archived"}).json()["status"]
        == "archived"
    )
    assert alice.get("/sessions").json()["total"] == 0
    archived = alice.get("/sessions", status="archived").json()
    assert [s["session_id"] for s in archived["sessions"]] == [sid]
    assert (
        alice.send("patch", f"/sessions/{sid}/", {"status": "active"}).json()["status"] == "active"
    )
    r = alice.send("delete", f"/sessions/{sid}")
    assert r.status_code == 200 and r.json() == {"session_id": sid, "status": "deleted"}
    assert error(alice.get(f"/sessions/{sid}"), 404) == "NOT_FOUND"
    assert Conversation.objects.get(pk=sid).status == "deleted"  # soft


def test_list_is_newest_first_with_paging_and_search(alice):
    old, _ = talk(alice.user, ["김치찌개 끓이는 법"])
    new, _ = talk(alice.user, ["Python generators"])
    body = alice.get("/sessions/").json()
    assert [s["session_id"] for s in body["sessions"]] == [str(new.pk), str(old.pk)]
    first = body["sessions"][0]
    assert set(first) == {
        "session_id",
        "title",
        "status",
        "created_at",
        "updated_at",
        "last_message",
        "last_message_at",
    }
    assert first["last_message"] == "A:Python generators"
    page = alice.get("/sessions", limit=1, offset=1).json()
    assert [s["session_id"] for s in page["sessions"]] == [str(old.pk)] and page["total"] == 2
    assert page["has_more"] is False
    assert alice.get("/sessions", limit=1).json()["has_more"] is True
    assert [s["session_id"] for s in alice.get("/sessions", q="찌개").json()["sessions"]] == [
        str(old.pk)
    ]
    # Message text, case-insensitive.
    assert [s["session_id"] for s in alice.get("/sessions", q="a:PYTHON").json()["sessions"]] == [
        str(new.pk)
    ]


def test_messages_page_the_thread_from_the_end(alice):
    conv, asked = talk(alice.user, ["q1", "q2", "q3"])
    sid = str(conv.pk)
    body = alice.get(f"/sessions/{sid}/messages").json()
    assert body["total"] == 6 and body["has_more"] is False
    assert [m["content"] for m in body["messages"]] == ["q1", "A:q1", "q2", "A:q2", "q3", "A:q3"]
    m = body["messages"][1]
    assert set(m) == {
        "message_id",
        "conversation_id",
        "parent_id",
        "sender_type",
        "sender_id",
        "message_type",
        "content",
        "status",
        "metadata",
        "created_at",
        "edited",
        "edited_at",
        "sibling_ids",
        "attachments",  # each message's files (README "Attachments")
    }
    assert m["sender_type"] == "assistant" and m["parent_id"] == asked[0].question.pk
    assert m["sibling_ids"] == [m["message_id"]] and set(m["metadata"]) == {
        "tokens_used",
        "latency_ms",
    }
    assert body["messages"][0]["sender_id"] == "alice"
    page = alice.get(f"/sessions/{sid}/messages", limit=2).json()
    assert [x["content"] for x in page["messages"]] == ["q3", "A:q3"] and page["has_more"]
    older = alice.get(
        f"/sessions/{sid}/messages", limit=2, before=page["messages"][0]["message_id"]
    ).json()
    assert [x["content"] for x in older["messages"]] == ["q2", "A:q2"] and older["has_more"]
    leaf = alice.get(f"/sessions/{sid}/messages", leaf=asked[0].question.pk).json()
    assert leaf["leaf_id"] == asked[2].answer.pk  # not a leaf: its newest descendant leaf


@pytest.mark.parametrize(
    "path",
    [
        "/sessions/{sid}",
        "/sessions/{sid}/messages",
    ],
)
def test_another_persons_conversation_is_404_everywhere(alice, bob, path):
    conv, _ = talk(bob.user, ["private"])
    url = path.format(sid=conv.pk)
    assert error(alice.get(url), 404) == "NOT_FOUND"
    assert (
        error(alice.send("patch", f"/sessions/{conv.pk}", {"title": "mine now"}), 404)
        == "NOT_FOUND"
    )
    assert error(alice.send("delete", f"/sessions/{conv.pk}"), 404) == "NOT_FOUND"
    assert Conversation.objects.get(pk=conv.pk).title == "private"
    assert alice.get("/sessions", q="private").json()["total"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body_or_params", "status"),
    [
        ("get", "/sessions", {"status": "deleted"}, 400),
        ("get", "/sessions", {"limit": "ten"}, 400),
        ("get", "/sessions", {"limit": "0"}, 400),
        ("get", "/sessions", {"offset": "-1"}, 400),
        ("get", "/sessions/not-a-uuid", {}, 404),
        ("get", "/sessions/{sid}/messages", {"limit": "101"}, 400),
        ("get", "/sessions/{sid}/messages", {"before": "x"}, 400),
        ("get", "/sessions/{sid}/messages", {"leaf": "999999"}, 404),
        ("get", "/sessions/{sid}/messages", {"before": "999999"}, 404),
        ("get", "/nothing-here", {}, 404),
        ("post", "/sessions", "{not json", 400),
        ("post", "/sessions", "[1, 2]", 400),
        ("post", "/sessions", {"title": 7}, 400),
        ("post", "/sessions", {"title": "x" * 201}, 400),
        ("post", "/sessions", {"title": " " * 201 + "x"}, 400),
        ("post", "/sessions", {"title": "nul\x00"}, 400),
        ("post", "/sessions", {"metadata": {"k": "nul\x00"}}, 400),
        ("post", "/sessions", {"title": {}}, 400),
        ("get", "/sessions", {"status": ""}, 400),
        ("get", "/sessions", {"limit": ""}, 400),
        ("post", "/sessions", {"metadata": "not an object"}, 400),
        ("patch", "/sessions/{sid}", {"status": "deleted"}, 400),
        ("patch", "/sessions/{sid}", {"owner": "bob"}, 400),
        ("put", "/sessions/{sid}", {}, 405),
        ("post", "/sessions/{sid}/messages", {}, 400),  # asking needs `content`
        ("put", "/sessions/{sid}/messages", {}, 405),
    ],
)
def test_bad_input_is_a_clear_json_error(alice, method, path, body_or_params, status):
    conv, _ = talk(alice.user, ["q"])
    url = path.format(sid=conv.pk)
    if method == "get":
        r = alice.get(url, **body_or_params)
    else:
        r = alice.send(method, url, body_or_params)
    assert error(r, status)


def test_cookie_writes_need_csrf_and_anonymous_callers_get_401(alice):
    assert error(alice.send("post", "/sessions", {"title": "t"}, csrf=False), 403)
    assert not Conversation.objects.exists()
    anon = Client()
    assert error(anon.get(f"{API}/sessions"), 401) == "UNAUTHENTICATED"
