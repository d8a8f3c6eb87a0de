"""Conversations and messages (chat/conversations.py, chat/messages.py, chat/selectors.py):
pairing, regenerate and edit as siblings, cancel, and the thread paths with their paging edges,
on the real database and the real admission engine (a real seat is needed to ask)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from sessions_app.chat import conversations, messages, selectors
from sessions_app.gate import services
from sessions_app.models import ChatMessage, Conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="x")


def seat(user: User) -> str:
    return services.session_open(user=user).session_id


def ask(user: User, seat_id: str, text: str, conversation: Any = None, **kw: Any) -> Any:
    return messages.message_ask(
        owner=user,
        seat_id=seat_id,
        content=text,
        conversation_id=str(conversation.pk) if conversation is not None else None,
        **kw,
    )


def finish(answer: Any, text: str = "ok") -> None:
    assert messages.answer_begin(answer_id=answer.pk)
    messages.answer_finish(answer_id=answer.pk, content=text, status="done", tokens_used=1)


def path(conversation: Any, **kw: Any) -> list[int]:
    page = selectors.thread_page(conversation=conversation, **kw)
    return [m["message_id"] for m in page["messages"]]


def test_first_question_creates_a_conversation_titled_from_it(alice):
    asked = ask(
        alice,
        seat(alice),
        "  How do I\n  bake bread at home with only a small oven and no mixer?  ",
    )
    conv = asked.conversation
    assert asked.created
    assert conv.owner == alice and conv.status == "active"
    assert conv.title == "How do I bake bread at home with only a small oven and no m…"
    assert len(conv.title) == 60 and "\n" not in conv.title
    assert conv.last_message_at is not None and len(conv.trace_id) == 32
    q, a = asked.question, asked.answer
    assert (q.sender_type, q.status, q.parent_id) == ("user", "pending", None)
    assert (a.sender_type, a.status, a.parent_id) == ("assistant", "pending", q.pk)
    assert str(q.seat_id) == str(a.seat_id)


def test_back_to_back_questions_pair_with_their_own_answers(alice):
    """q1, q2 sent before a1 starts: the record still reads q1, a1, q2, a2 on the path."""
    sid = seat(alice)
    first = ask(alice, sid, "one")
    second = ask(alice, sid, "two", first.conversation)
    assert second.question.parent_id == first.answer.pk
    # Answered in the order asked: the seat's oldest placeholder first.
    assert messages.answer_next(seat_id=sid).pk == first.answer.pk
    finish(first.answer, "A1")
    assert messages.answer_next(seat_id=sid).pk == second.answer.pk
    finish(second.answer, "A2")
    page = selectors.thread_page(conversation=first.conversation)
    assert [(m["sender_type"], m["content"]) for m in page["messages"]] == [
        ("user", "one"),
        ("assistant", "A1"),
        ("user", "two"),
        ("assistant", "A2"),
    ]
    assert ChatMessage.objects.get(pk=first.question.pk).status == "done"


def test_asking_without_an_active_seat_is_refused_and_records_nothing(alice):
    services.session_open(user=User.objects.create_user("holder"))
    from sessions_app.gate.admission import get_manager

    get_manager().set_limits({"max_active_sessions": 1})
    queued = services.session_open(user=alice)
    assert queued.state == "queued"
    with pytest.raises(services.NotActive):
        ask(alice, queued.session_id, "hello")
    assert not Conversation.objects.exists() and not ChatMessage.objects.exists()


def test_another_persons_conversation_is_not_found(alice):
    bob = User.objects.create_user("bob")
    theirs = ask(bob, seat(bob), "bob's").conversation
    with pytest.raises(conversations.ConversationNotFound):
        ask(alice, seat(alice), "sneak in", theirs)
    with pytest.raises(messages.MessageNotFound):
        messages.message_cancel(owner=alice, message_id=theirs.messages.first().pk)
    with pytest.raises(conversations.ConversationNotFound):
        conversations.conversation_update(owner=alice, conversation_id=theirs.pk, title="x")


def test_regenerate_adds_a_sibling_and_keeps_the_earlier_answer(alice):
    sid = seat(alice)
    asked = ask(alice, sid, "q")
    finish(asked.answer, "first answer")
    again = messages.message_regenerate(owner=alice, seat_id=sid, message_id=asked.answer.pk)
    assert again.answer.parent_id == asked.question.pk and again.question.pk == asked.question.pk
    finish(again.answer, "second answer")
    page = selectors.thread_page(conversation=asked.conversation)
    last = page["messages"][-1]
    assert last["content"] == "second answer"
    assert last["sibling_ids"] == [asked.answer.pk, again.answer.pk]
    # The earlier version is still there, and reachable as a leaf of its own.
    assert path(asked.conversation, leaf=asked.answer.pk) == [asked.question.pk, asked.answer.pk]
    assert ChatMessage.objects.get(pk=asked.answer.pk).content == "first answer"


def test_regenerate_refuses_questions_and_answers_still_being_written(alice):
    sid = seat(alice)
    asked = ask(alice, sid, "q")
    with pytest.raises(messages.WrongMessage):
        messages.message_regenerate(owner=alice, seat_id=sid, message_id=asked.question.pk)
    with pytest.raises(messages.WrongMessage):
        messages.message_regenerate(owner=alice, seat_id=sid, message_id=asked.answer.pk)


def test_edit_forks_a_new_branch_and_keeps_the_old_one(alice):
    sid = seat(alice)
    one = ask(alice, sid, "one")
    finish(one.answer)
    two = ask(alice, sid, "two", one.conversation)
    finish(two.answer)
    edited = messages.message_edit(
        owner=alice, seat_id=sid, message_id=two.question.pk, content="two, better"
    )
    q = edited.question
    assert q.parent_id == one.answer.pk and q.edited and q.edited_at is not None
    assert edited.answer.parent_id == q.pk
    conv = one.conversation
    assert path(conv) == [one.question.pk, one.answer.pk, q.pk, edited.answer.pk]
    siblings = selectors.thread_page(conversation=conv)["messages"][2]["sibling_ids"]
    assert siblings == [two.question.pk, q.pk]
    # The old branch: choosing the old question shows the path down to its newest leaf.
    assert path(conv, leaf=two.question.pk) == [
        one.question.pk,
        one.answer.pk,
        two.question.pk,
        two.answer.pk,
    ]
    # Editing the very first question forks at the root.
    root = messages.message_edit(owner=alice, seat_id=sid, message_id=one.question.pk, content="0")
    assert root.question.parent_id is None
    assert selectors.thread_page(conversation=conv)["messages"][0]["sibling_ids"] == [
        one.question.pk,
        root.question.pk,
    ]


def test_cancel_before_start_ends_question_and_answer(alice):
    sid = seat(alice)
    asked = ask(alice, sid, "q")
    out = messages.message_cancel(owner=alice, message_id=asked.question.pk)
    assert out.not_started == [asked.answer.pk] and out.streaming == []
    assert ChatMessage.objects.get(pk=asked.answer.pk).status == "cancelled"
    assert ChatMessage.objects.get(pk=asked.question.pk).status == "cancelled"
    assert messages.answer_next(seat_id=sid) is None
    assert not messages.answer_begin(answer_id=asked.answer.pk)


def test_cancel_while_streaming_names_the_answer_for_the_streamer(alice):
    sid = seat(alice)
    asked = ask(alice, sid, "q")
    assert messages.answer_begin(answer_id=asked.answer.pk)
    out = messages.message_cancel(owner=alice, message_id=asked.answer.pk)
    assert out.streaming == [asked.answer.pk] and out.not_started == []


def test_thread_paging_edges(alice):
    sid = seat(alice)
    conv = conversations.conversation_create(owner=alice, title="t")
    # Empty conversation.
    assert selectors.thread_page(conversation=conv) == {
        "messages": [],
        "has_more": False,
        "total": 0,
        "leaf_id": None,
    }
    ids: list[int] = []
    for i in range(3):
        asked = ask(alice, sid, f"q{i}", conv)
        finish(asked.answer)
        ids += [asked.question.pk, asked.answer.pk]
    # Exactly one page.
    page = selectors.thread_page(conversation=conv, limit=6)
    assert [m["message_id"] for m in page["messages"]] == ids and not page["has_more"]
    assert page["total"] == 6 and page["leaf_id"] == ids[-1]
    # One short of the whole path: more to load.
    page = selectors.thread_page(conversation=conv, limit=5)
    assert [m["message_id"] for m in page["messages"]] == ids[1:] and page["has_more"]
    # `before` pages backwards to the exact start.
    page = selectors.thread_page(conversation=conv, limit=2, before=ids[2])
    assert [m["message_id"] for m in page["messages"]] == ids[:2] and not page["has_more"]
    page = selectors.thread_page(conversation=conv, limit=2, before=ids[0])
    assert page["messages"] == [] and not page["has_more"]
    # A `leaf` that is not a leaf stands for its newest descendant leaf.
    assert selectors.thread_page(conversation=conv, leaf=ids[0])["leaf_id"] == ids[-1]
    with pytest.raises(selectors.MessageNotFound):
        selectors.thread_page(conversation=conv, leaf=10**9)
    with pytest.raises(selectors.MessageNotFound):
        selectors.thread_page(conversation=conv, before=10**9)


def test_list_search_archive_restore_delete(alice):
    sid = seat(alice)
    bread = ask(alice, sid, "빵 굽는 법을 알려 주세요").conversation
    soup = ask(alice, sid, "Soup recipes").conversation
    ask(alice, sid, "Which pot for SOURDOUGH starter?", soup)
    other = User.objects.create_user("other")
    ask(other, seat(other), "빵 and soup")
    listed = selectors.conversation_list(owner=alice)
    assert [s["session_id"] for s in listed.sessions] == [str(soup.pk), str(bread.pk)]
    assert listed.total == 2 and not listed.has_more
    assert listed.sessions[0]["last_message"] == ""  # the newest message: a pending answer
    # Titles and message text, case-insensitive, Korean included; never another person's.
    assert [s["title"] for s in selectors.conversation_list(owner=alice, q="빵").sessions] == [
        bread.title
    ]
    assert [
        s["session_id"] for s in selectors.conversation_list(owner=alice, q="sourdough").sessions
    ] == [str(soup.pk)]
    page = selectors.conversation_list(owner=alice, limit=1)
    assert len(page.sessions) == 1 and page.has_more and page.total == 2
    conversations.conversation_update(owner=alice, conversation_id=bread.pk, status="archived")
    assert selectors.conversation_list(owner=alice).total == 1
    assert selectors.conversation_list(owner=alice, status="archived").total == 1
    conversations.conversation_update(owner=alice, conversation_id=bread.pk, status="active")
    conversations.conversation_delete(owner=alice, conversation_id=bread.pk)
    assert selectors.conversation_list(owner=alice).total == 1
    assert Conversation.objects.filter(pk=bread.pk, status="deleted").exists()  # soft
    with pytest.raises(conversations.ConversationNotFound):
        conversations.conversation_get(owner=alice, conversation_id=bread.pk)
    with pytest.raises(conversations.InvalidChange):
        conversations.conversation_update(owner=alice, conversation_id=soup.pk, status="deleted")
    with pytest.raises(conversations.InvalidChange):
        conversations.conversation_update(owner=alice, conversation_id=soup.pk, title="x" * 201)


def test_a_conversation_outlives_its_seat_and_continues_with_the_next(alice):
    first_seat = seat(alice)
    asked = ask(alice, first_seat, "before leaving")
    finish(asked.answer, "A")
    services.session_close(session_id=first_seat, reason="user")
    next_seat = seat(alice)
    assert next_seat != first_seat
    more = ask(alice, next_seat, "after coming back", asked.conversation)
    assert more.question.parent_id == asked.answer.pk
    assert str(more.question.seat_id) == next_seat
    assert path(asked.conversation) == [
        asked.question.pk,
        asked.answer.pk,
        more.question.pk,
        more.answer.pk,
    ]


def test_deleting_a_conversation_cancels_answers_not_started(alice):
    sid = seat(alice)
    asked = ask(alice, sid, "q")
    conversations.conversation_delete(owner=alice, conversation_id=asked.conversation.pk)
    assert messages.answer_next(seat_id=sid) is None
    assert ChatMessage.objects.get(pk=asked.answer.pk).status == "cancelled"
    assert ChatMessage.objects.get(pk=asked.question.pk).status == "cancelled"


def test_the_models_context_is_the_path_not_the_other_branches(alice):
    sid = seat(alice)
    one = ask(alice, sid, "one")
    finish(one.answer, "A1")
    old = ask(alice, sid, "old branch", one.conversation)
    finish(old.answer, "old answer")
    new = messages.message_edit(owner=alice, seat_id=sid, message_id=old.question.pk, content="new")
    turns = selectors.path_contents(
        conversation_id=one.conversation.pk, up_to=new.answer.parent_id, limit=10
    )
    assert turns == [("user", "one"), ("assistant", "A1"), ("user", "new")]
    # `limit` counts the question: one earlier turn kept.
    short = selectors.path_contents(
        conversation_id=one.conversation.pk, up_to=new.answer.parent_id, limit=2
    )
    assert short == [("assistant", "A1"), ("user", "new")]


def test_an_empty_conversation_is_named_by_its_first_question(alice):
    conv = conversations.conversation_create(owner=alice)
    assert conv.title == ""
    ask(alice, seat(alice), "첫 질문이 제목이 됩니다", conv)
    conv.refresh_from_db()
    assert conv.title == "첫 질문이 제목이 됩니다"
    ask(alice, seat(alice), "second question", conv)
    conv.refresh_from_db()
    assert conv.title == "첫 질문이 제목이 됩니다"
