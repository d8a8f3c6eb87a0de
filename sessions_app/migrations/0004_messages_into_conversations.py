"""Data: each seat that has messages becomes one conversation holding them, nothing dropped.

The old table stored answers in the order they were *started*, so questions sent back to back
read q1, q2, a1, a2. Answers were produced one at a time for the oldest waiting question, so
the k-th answer belongs to the earliest question before it that has no answer yet; the branch
is chained in that pairing (q1 → a1 → q2 → a2), which is how the thread is shown from now on.
The pks (send order) and every field are kept as they were.
"""

from django.db import migrations

TITLE_CHARS = 60


def _title(content):
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def chain_order(rows):
    """[(pk, sender_type)] in send order → the same pks in thread order (answers after their
    questions). Exposed for the migration's test."""
    answer_of = {}
    waiting = []  # questions without an answer yet, oldest first
    for pk, sender in rows:
        if sender == "user":
            waiting.append(pk)
        elif sender == "assistant" and waiting:
            answer_of[waiting.pop(0)] = pk
    paired_answers = set(answer_of.values())
    order = []
    for pk, sender in rows:
        if pk in paired_answers:
            continue  # placed right after its question
        order.append(pk)
        if pk in answer_of:
            order.append(answer_of[pk])
    return order


def forwards(apps, schema_editor):
    ChatSession = apps.get_model("sessions_app", "ChatSession")
    ChatMessage = apps.get_model("sessions_app", "ChatMessage")
    Conversation = apps.get_model("sessions_app", "Conversation")
    seat_ids = (
        ChatMessage.objects.filter(conversation__isnull=True)
        .order_by()  # the historical Meta.ordering still names the renamed `session`
        .values_list("seat_id", flat=True)
        .distinct()
    )
    for seat in ChatSession.objects.filter(id__in=list(seat_ids)).iterator():
        # Old rows carried a per-seat sequence; it is gone in 0005, the pk keeps send order.
        rows = list(ChatMessage.objects.filter(seat_id=seat.id).order_by("sequence", "id"))
        if not rows:
            continue
        first_question = next((m for m in rows if m.sender_type == "user"), None)
        last_at = max(m.created_at for m in rows)
        conversation = Conversation.objects.create(
            owner_id=seat.user_id,
            title=_title(first_question.content) if first_question else "",
            status="active",
            created_at=seat.created_at,
            updated_at=last_at,
            last_message_at=last_at,
            metadata={"migrated_from_seat": str(seat.id)},
        )
        by_pk = {m.pk: m for m in rows}
        parent = None
        for pk in chain_order([(m.pk, m.sender_type) for m in rows]):
            ChatMessage.objects.filter(pk=pk).update(
                conversation_id=conversation.id, parent_id=parent
            )
            parent = by_pk[pk].pk


def backwards(apps, schema_editor):
    # Going back drops the tree (0003 removes the columns); the messages stay with their seats.
    ChatMessage = apps.get_model("sessions_app", "ChatMessage")
    ChatMessage.objects.update(conversation=None, parent=None)


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0003_conversations")]

    operations = [migrations.RunPython(forwards, backwards)]
