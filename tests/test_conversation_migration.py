"""The data migration (0004): a database holding old seats with messages, migrated forward —
every message kept, in a conversation per seat, chained in the right pairing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

OLD = [("sessions_app", "0002_grace_lower_bound")]
NEW = [("sessions_app", "0006_message_tree_fields")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def back_to_the_newest_schema():
    """Later tests expect every migration applied: a test left at 0006 once took the alert table
    (0007) away from every test after it ("no such table: sessions_app_alert" in CI)."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_old_seats_become_conversations_with_nothing_lost():
    apps = migrate(OLD)
    User = apps.get_model("auth", "User")
    Seat = apps.get_model("sessions_app", "ChatSession")
    Message = apps.get_model("sessions_app", "ChatMessage")
    t0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    alice = User.objects.create(username="alice")
    bob = User.objects.create(username="bob")
    # Alice sent two questions back to back: the old table reads q1, q2, a1, a2.
    s1 = Seat.objects.create(user=alice, state="closed", created_at=t0, close_reason="expired")
    rows = [
        ("user", "첫 질문입니다\n두 줄", "done"),
        ("user", "second", "done"),
        ("assistant", "answer one", "done"),
        ("assistant", "answer two", "done"),
        ("user", "cancelled before it started", "cancelled"),
    ]
    old_ids = []
    for seq, (role, content, status) in enumerate(rows, start=1):
        m = Message.objects.create(
            session=s1,
            sequence=seq,
            role=role,
            content=content,
            status=status,
            tokens=seq,
            latency_ms=10 * seq,
            created_at=t0 + dt.timedelta(seconds=seq),
        )
        old_ids.append(m.pk)
    # A second seat of Alice's and a seat of Bob's; a seat with no messages gets nothing.
    s2 = Seat.objects.create(user=alice, state="active", created_at=t0 + dt.timedelta(days=1))
    Message.objects.create(session=s2, sequence=1, role="user", content="again", status="pending")
    s3 = Seat.objects.create(user=bob, state="closed", created_at=t0)
    Message.objects.create(session=s3, sequence=1, role="system", content="note", status="done")
    Seat.objects.create(user=bob, state="closed", created_at=t0)

    apps = migrate(NEW)
    Conversation = apps.get_model("sessions_app", "Conversation")
    Message = apps.get_model("sessions_app", "ChatMessage")
    assert Message.objects.count() == 7
    assert Conversation.objects.count() == 3
    first = Conversation.objects.get(metadata__migrated_from_seat=str(s1.id))
    assert first.owner_id == alice.pk and first.status == "active"
    assert first.title == "첫 질문입니다 두 줄"
    assert first.created_at == t0 and first.last_message_at == t0 + dt.timedelta(seconds=5)
    by_id = {m.pk: m for m in Message.objects.filter(conversation=first)}
    assert sorted(by_id) == old_ids  # same rows, same pks (send order)
    q1, q2, a1, a2, q3 = old_ids
    # Chained in the right pairing: q1 → a1 → q2 → a2 → q3.
    assert [by_id[i].parent_id for i in (q1, a1, q2, a2, q3)] == [None, q1, a1, q2, a2]
    # Every field kept.
    assert (by_id[a2].content, by_id[a2].tokens_used, by_id[a2].latency_ms) == ("answer two", 4, 40)
    assert by_id[q3].status == "cancelled" and str(by_id[q1].seat_id) == str(s1.id)
    second = Conversation.objects.get(metadata__migrated_from_seat=str(s2.id))
    assert second.title == "again" and second.messages.get().parent_id is None
    bobs = Conversation.objects.get(owner_id=bob.pk)
    assert bobs.title == "" and bobs.messages.get().content == "note"


def test_going_back_keeps_the_messages_with_their_seats():
    from django.contrib.auth.models import User

    from sessions_app.chat import messages
    from sessions_app.gate import services

    newest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    migrate(newest)  # today's code writes today's columns
    alice = User.objects.create_user("alice")
    seat = services.session_open(user=alice).session_id
    messages.message_ask(owner=alice, seat_id=seat, content="kept")
    apps = migrate(OLD)
    Message = apps.get_model("sessions_app", "ChatMessage")
    assert sorted(Message.objects.values_list("content", flat=True)) == ["", "kept"]
    assert {str(s) for s in Message.objects.values_list("session_id", flat=True)} == {seat}
    migrate(newest)
