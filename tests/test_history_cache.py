"""The history cache (chat/history_cache.py, issue 12): the newest page of a conversation comes
from Redis with no database read, every kind of write makes it unreadable at once, a reader
that raced a write never serves what it read, the TTL bounds it, and a Redis that cannot be
asked only means the database answers. Real Redis, real database."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app.chat import history_cache, messages, selectors
from sessions_app.chat.sweep import messages_sweep
from sessions_app.gate import services
from sessions_app.models import ChatMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="x")


def fresh(conversation: Any) -> dict[str, Any]:
    """The page straight from the database, bypassing the cache."""
    return selectors._thread_page(conversation, selectors.PAGE_DEFAULT, None, None, None)


def cached(conversation: Any) -> dict[str, Any]:
    return selectors.thread_page(conversation=conversation)


def asked(alice: User, text: str = "hello", conversation: Any = None) -> Any:
    seat_id = services.session_open(user=alice).session_id
    return messages.message_ask(
        owner=alice,
        seat_id=seat_id,
        content=text,
        conversation_id=str(conversation.pk) if conversation is not None else None,
    )


def test_a_second_reading_is_served_from_redis_without_touching_the_database(alice):
    first = asked(alice)
    messages.answer_begin(answer_id=first.answer.pk)
    messages.answer_finish(answer_id=first.answer.pk, content="hi", status="done", tokens_used=1)
    conversation = first.conversation
    page = cached(conversation)
    assert [m["content"] for m in page["messages"]] == ["hello", "hi"]
    with CaptureQueriesContext(connection) as queries:
        again = cached(conversation)
    assert again == page == fresh(conversation)
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_every_kind_of_write_makes_the_cached_page_unreadable(alice):
    one = asked(alice, "first")
    conversation = one.conversation
    assert cached(conversation) == fresh(conversation)

    writes = {
        "queryset update (answer_begin)": lambda: messages.answer_begin(answer_id=one.answer.pk),
        "save (answer_finish)": lambda: messages.answer_finish(
            answer_id=one.answer.pk, content="answered", status="done", tokens_used=2
        ),
        "create (a second question)": lambda: asked(alice, "second", conversation),
        "cancel": lambda: messages.message_cancel(
            owner=alice, message_id=ChatMessage.objects.latest("pk").pk
        ),
        "sweep (bulk update)": lambda: (
            ChatMessage.objects.filter(pk=one.answer.pk).update(status="streaming"),
            messages_sweep(older_than_seconds=-1),
        ),
        "delete": lambda: ChatMessage.objects.latest("pk").delete(),
    }
    for name, write in writes.items():
        before = cached(conversation)
        write()
        after = cached(conversation)
        assert after == fresh(conversation), name
        assert after != before, f"{name} changed nothing the page shows"


def test_a_reader_that_raced_a_write_never_serves_what_it_read(alice):
    one = asked(alice, "question")
    conversation = one.conversation
    stale = fresh(conversation)

    def read_then_a_write_lands() -> dict[str, Any]:
        # The reader has read the rows; a writer changes them before the reader stores its page.
        ChatMessage.objects.filter(pk=one.question.pk).update(content="changed meanwhile")
        return stale

    served = history_cache.recent_page(
        conversation.pk, selectors.PAGE_DEFAULT, read_then_a_write_lands
    )
    assert served is stale  # that reader answers with what it read...
    page = cached(conversation)  # ...but nobody after it does
    assert page["messages"][0]["content"] == "changed meanwhile"


def test_pages_and_stamps_expire_by_the_ttl(alice, settings):
    settings.CHATGATE = {**settings.CHATGATE, "HISTORY_CACHE_SECONDS": 7}
    conversation = asked(alice).conversation
    cached(conversation)
    stamp = cache.get(history_cache._stamp_key(conversation.pk))
    page_key = history_cache._page_key(conversation.pk, stamp, selectors.PAGE_DEFAULT)
    assert 0 < cache.ttl(page_key) <= 7
    assert 7 < cache.ttl(history_cache._stamp_key(conversation.pk)) <= 7 * 4


def test_zero_turns_the_cache_off(alice, settings):
    settings.CHATGATE = {**settings.CHATGATE, "HISTORY_CACHE_SECONDS": 0}
    conversation = asked(alice).conversation
    cached(conversation)
    with CaptureQueriesContext(connection) as queries:
        cached(conversation)
    assert len(queries) > 0
    assert cache.get(history_cache._stamp_key(conversation.pk)) is None


def test_an_unreachable_redis_means_the_database_answers(alice, settings):
    conversation = asked(alice).conversation
    expected = fresh(conversation)
    # A real Redis client pointed at a port nobody listens on (the settings change resets
    # Django's cache connections).
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {
                **settings.CACHES["default"]["OPTIONS"],
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
            },
        }
    }
    assert cached(conversation) == expected
