"""Paging a thread forward with `after` (and together with `before`), and the small rules the
HTTP send relies on: a not-started failure never ends an answer someone is writing, and the
earlier protocol's fields are added to frames, never overwritten."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from sessions_app.chat import frames, messages
from sessions_app.chat.conversations import conversation_create
from sessions_app.gate import services
from tests.test_chat_api import Browser, error, talk

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def alice() -> Browser:
    return Browser(User.objects.create_user("alice", password="x"))


def contents(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [m["content"] for m in response.json()["messages"]]


def test_after_pages_forward_with_exact_boundaries(alice: Browser) -> None:
    conv, asked = talk(alice.user, ["q1", "q2", "q3"])
    path = f"/sessions/{conv.pk}/messages"
    first = asked[0].question.pk
    page = alice.get(path, after=first, limit=2)
    assert contents(page) == ["A:q1", "q2"] and page.json()["has_more"] is True
    # Exactly the rest: no more after it.
    page = alice.get(path, after=asked[1].question.pk, limit=3)
    assert contents(page) == ["A:q2", "q3", "A:q3"] and page.json()["has_more"] is False
    assert page.json()["total"] == 6
    # After the newest message: an empty page.
    page = alice.get(path, after=asked[2].answer.pk)
    assert contents(page) == [] and page.json()["has_more"] is False


def test_before_and_after_together_give_the_messages_between(alice: Browser) -> None:
    conv, asked = talk(alice.user, ["q1", "q2", "q3"])
    path = f"/sessions/{conv.pk}/messages"
    between = alice.get(path, after=asked[0].question.pk, before=asked[2].answer.pk)
    assert contents(between) == ["A:q1", "q2", "A:q2", "q3"]
    assert between.json()["has_more"] is False
    narrow = alice.get(path, after=asked[0].question.pk, before=asked[2].answer.pk, limit=3)
    assert contents(narrow) == ["A:q1", "q2", "A:q2"] and narrow.json()["has_more"] is True
    # Adjacent, and the wrong way round: nothing between them.
    assert contents(alice.get(path, after=asked[1].question.pk, before=asked[1].answer.pk)) == []
    assert contents(alice.get(path, after=asked[2].question.pk, before=asked[0].answer.pk)) == []


def test_after_edges_are_clear_errors(alice: Browser) -> None:
    empty = conversation_create(owner=alice.user, title="", announce=False)
    assert error(alice.get(f"/sessions/{empty.pk}/messages", after=1), 404) == "NOT_FOUND"
    conv, _asked = talk(alice.user, ["q1"])
    path = f"/sessions/{conv.pk}/messages"
    assert error(alice.get(path, after="x"), 400) == "BAD_REQUEST"
    assert error(alice.get(path, after=0), 400) == "BAD_REQUEST"
    assert error(alice.get(path, after=10**9), 404) == "NOT_FOUND"


def test_a_not_started_failure_never_ends_an_answer_being_written(alice: Browser) -> None:
    seat = services.session_open(user=alice.user).session_id
    asked = messages.message_ask(owner=alice.user, seat_id=seat, content="q")
    assert messages.answer_begin(answer_id=asked.answer.pk)  # another answerer writes it
    ended = messages.answer_finish(
        answer_id=asked.answer.pk, content="", status="failed", started=False
    )
    asked.answer.refresh_from_db()
    assert ended is False and asked.answer.status == "streaming"
    assert messages.answer_finish(answer_id=asked.answer.pk, content="a", status="done")


def test_protocol_fields_are_added_never_overwritten() -> None:
    chunk = frames.with_protocol_fields({"type": "stream_chunk", "message_id": 3})
    assert chunk["sender_type"] == "assistant" and chunk["sender_id"] == "assistant"
    assert chunk["timestamp"]
    kept = frames.with_protocol_fields(
        {"type": "message", "sender_type": "user", "sender_id": "alice", "timestamp": "t"}
    )
    assert kept == {
        "type": "message",
        "sender_type": "user",
        "sender_id": "alice",
        "timestamp": "t",
    }
