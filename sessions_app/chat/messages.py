"""Chat messages: asking, regenerating, editing, cancelling, and recording how answers end.

Pairing: recording a question creates its answer placeholder (pending, parent = the question)
in the same transaction, and the next question follows that placeholder, so q1, a1, q2, a2
pair right even when questions are sent back to back. Regenerate adds a sibling of the answer,
edit a sibling of the question (plus its placeholder): nothing earlier changes.

A seat's answers are produced one at a time, in pk order of its pending placeholders (across
all the person's conversations), by whoever holds the seat's generation slot (answering.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app import metrics
from sessions_app.chat.conversations import (
    conversation_announce,
    conversation_create,
    conversation_get,
)
from sessions_app.gate.journal import ensure_recorded
from sessions_app.gate.services import NotActive, session_touch
from sessions_app.models import ChatMessage, Conversation
from sessions_app.models.conversations import title_from_question

ANSWERING = (ChatMessage.Status.PENDING, ChatMessage.Status.STREAMING)


class MessageNotFound(LookupError):
    """No such message in the person's conversations (another person's id looks the same)."""


class WrongMessage(ValueError):
    """The message exists but the action does not apply to it; the text says why."""


@dataclass(frozen=True)
class Asked:
    question: Any
    answer: Any
    conversation: Any
    created: bool = False


def _require_active(seat_id: str) -> None:
    """Counts as chat activity; raises NotActive unless the seat is active."""
    if session_touch(session_id=seat_id, kind="activity").state != "active":
        raise NotActive(seat_id)
    # The message will point at the seat's row, which may still be on its way (journal).
    ensure_recorded(seat_id)


def _message_of(owner: Any, message_id: object) -> Any:
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise MessageNotFound(str(message_id))
    found = (
        ChatMessage.objects.select_related("conversation")
        .filter(pk=message_id, conversation__owner=owner)
        .exclude(conversation__status=Conversation.Status.DELETED)
        .first()
    )
    if found is None:
        raise MessageNotFound(str(message_id))
    return found


def _record(
    *, conversation: Any, seat_id: str, parent_id: int | None, content: str, edited: bool
) -> tuple[Any, Any]:
    """Question + answer placeholder; the conversation is locked by the caller."""
    now = timezone.now()
    question = ChatMessage.objects.create(
        conversation=conversation,
        seat_id=seat_id,
        parent_id=parent_id,
        sender_type=ChatMessage.Role.USER,
        content=content,
        status=ChatMessage.Status.PENDING,
        edited=edited,
        edited_at=now if edited else None,
        created_at=now,
    )
    answer = _placeholder(conversation=conversation, seat_id=seat_id, parent_id=question.pk)
    return question, answer


def _placeholder(*, conversation: Any, seat_id: str, parent_id: int) -> Any:
    now = timezone.now()
    answer = ChatMessage.objects.create(
        conversation=conversation,
        seat_id=seat_id,
        parent_id=parent_id,
        sender_type=ChatMessage.Role.ASSISTANT,
        status=ChatMessage.Status.PENDING,
        created_at=now,
    )
    conversation.last_message_at = now
    conversation.updated_at = now
    if conversation.status == Conversation.Status.ARCHIVED:
        conversation.status = Conversation.Status.ACTIVE  # asking again brings it back
    conversation.save(update_fields=["last_message_at", "updated_at", "status"])
    conversation_announce(conversation)
    return answer


def message_ask(
    *,
    owner: Any,
    seat_id: str,
    content: str,
    conversation_id: object = None,
    parent_id: object = None,
) -> Asked:
    """Records a question (and its answer placeholder) in a conversation of the person, or in a
    new one titled from the question. It follows `parent_id` when given (a message of that
    conversation), else the conversation's newest message (always a leaf: children have larger
    pks). Raises NotActive without an active seat, ConversationNotFound, MessageNotFound."""
    if conversation_id is not None:
        conversation_get(owner=owner, conversation_id=conversation_id)  # 404 before any write
    if parent_id is not None and (
        conversation_id is None or not isinstance(parent_id, int) or isinstance(parent_id, bool)
    ):
        raise MessageNotFound(str(parent_id))
    _require_active(seat_id)
    with transaction.atomic():
        created = conversation_id is None
        if created:
            conversation = conversation_create(
                owner=owner, title=title_from_question(content), announce=False
            )
        else:
            # Locked: two questions sent back to back both follow the newest message in turn.
            conversation = conversation_get(
                owner=owner, conversation_id=conversation_id, for_update=True
            )
            if not conversation.title:
                # Created empty (POST /api/chat/sessions, "new conversation"): the first
                # question names it, as it names a conversation the socket creates.
                conversation.title = title_from_question(content)
                conversation.save(update_fields=["title"])
        rows = ChatMessage.objects.filter(conversation=conversation)
        if parent_id is not None:
            if not rows.filter(pk=parent_id).exists():
                raise MessageNotFound(str(parent_id))
            follows: int | None = parent_id
        else:
            follows = rows.order_by("-pk").values_list("pk", flat=True).first()
        question, answer = _record(
            conversation=conversation,
            seat_id=seat_id,
            parent_id=follows,
            content=content,
            edited=False,
        )
    metrics.chat_event("chat_messages")
    return Asked(question=question, answer=answer, conversation=conversation, created=created)


def message_regenerate(*, owner: Any, seat_id: str, message_id: object) -> Asked:
    """A new answer to the same question: a sibling of the answer `message_id`."""
    earlier = _message_of(owner, message_id)
    if earlier.sender_type != ChatMessage.Role.ASSISTANT or earlier.parent_id is None:
        raise WrongMessage("Only an answer can be regenerated.")
    if earlier.status in ANSWERING:
        raise WrongMessage("That answer is still being written.")
    _require_active(seat_id)
    with transaction.atomic():
        conversation = conversation_get(
            owner=owner, conversation_id=earlier.conversation_id, for_update=True
        )
        answer = _placeholder(
            conversation=conversation, seat_id=seat_id, parent_id=earlier.parent_id
        )
        ChatMessage.objects.filter(pk=earlier.parent_id).update(status=ChatMessage.Status.PENDING)
    question = ChatMessage.objects.get(pk=earlier.parent_id)
    return Asked(question=question, answer=answer, conversation=conversation)


def message_edit(*, owner: Any, seat_id: str, message_id: object, content: str) -> Asked:
    """Asks again with new text: a sibling of the question `message_id` and its placeholder."""
    earlier = _message_of(owner, message_id)
    if earlier.sender_type != ChatMessage.Role.USER:
        raise WrongMessage("Only a question can be edited.")
    _require_active(seat_id)
    with transaction.atomic():
        conversation = conversation_get(
            owner=owner, conversation_id=earlier.conversation_id, for_update=True
        )
        question, answer = _record(
            conversation=conversation,
            seat_id=seat_id,
            parent_id=earlier.parent_id,
            content=content,
            edited=True,
        )
    metrics.chat_event("chat_messages")
    return Asked(question=question, answer=answer, conversation=conversation)


def answer_next(*, seat_id: str) -> Any:
    """The seat's oldest pending placeholder. Call it only while holding the seat's generation
    slot: one lease per seat makes the holder the only answerer, so questions from two tabs on
    two processes are answered one at a time, in the order they were recorded."""
    return (
        ChatMessage.objects.filter(
            seat_id=uuid.UUID(str(seat_id)),
            sender_type=ChatMessage.Role.ASSISTANT,
            status=ChatMessage.Status.PENDING,
        )
        .order_by("pk")
        .first()
    )


def answer_begin(*, answer_id: int) -> bool:
    """pending → streaming; False when it was cancelled meanwhile (then it is not answered)."""
    return bool(
        ChatMessage.objects.filter(pk=answer_id, status=ChatMessage.Status.PENDING).update(
            status=ChatMessage.Status.STREAMING
        )
    )


def answer_finish(
    *,
    answer_id: int,
    content: str,
    status: str,
    tokens_used: int = 0,
    latency_ms: int | None = None,
    started: bool = True,
) -> bool:
    """Records how an answer ended (done, cancelled, failed); its question takes the same status.
    `started=False`: it never reached the model (no slot in time). False if it had ended."""
    # Not started: only a placeholder still pending. Two answerers of one seat (a page's
    # socket and an HTTP runner) may wait for the same one; the other may be writing it.
    ending = ANSWERING if started else (ChatMessage.Status.PENDING,)
    with transaction.atomic():
        answer = ChatMessage.objects.filter(pk=answer_id, status__in=ending).first()
        if answer is None:
            return False  # already ended (cancelled before it started, or swept)
        answer.content = content
        answer.status = status
        answer.tokens_used = tokens_used
        answer.latency_ms = latency_ms
        answer.save(update_fields=["content", "status", "tokens_used", "latency_ms"])
        if answer.parent_id is not None:
            question = ChatMessage.objects.filter(pk=answer.parent_id, status__in=ANSWERING)
            question.update(status=status)
    # For /metrics (Redis, so every process reports the same totals); never fails the call.
    event = None
    if status == ChatMessage.Status.FAILED:
        event = "backend_errors" if started else "capacity_timeouts"
    elif status == ChatMessage.Status.CANCELLED:
        event = "cancelled"
    seconds = latency_ms / 1000 if started and latency_ms is not None else None
    if seconds is not None or event is not None:
        metrics.answer_observe(seconds=seconds, event=event)
    return True


@dataclass(frozen=True)
class Cancelled:
    conversation_id: str
    not_started: list[int]  # placeholders now cancelled (never answered)
    streaming: list[int]  # answers being written: whoever streams them must stop


def message_cancel(*, owner: Any, message_id: object) -> Cancelled:
    """Stop: a question's or an answer's id. Not started → cancelled here; streaming → listed,
    so the caller can tell the answerer (on whichever process) to stop."""
    message = _message_of(owner, message_id)
    if message.sender_type == ChatMessage.Role.ASSISTANT:
        answers = ChatMessage.objects.filter(pk=message.pk)
    else:
        answers = ChatMessage.objects.filter(
            parent_id=message.pk, sender_type=ChatMessage.Role.ASSISTANT
        )
    not_started: list[int] = []
    streaming: list[int] = []
    with transaction.atomic():
        for answer in answers.filter(status__in=ANSWERING).select_for_update():
            if answer.status == ChatMessage.Status.PENDING:
                not_started.append(answer.pk)
            else:
                streaming.append(answer.pk)
        if not_started:
            ChatMessage.objects.filter(pk__in=not_started).update(
                status=ChatMessage.Status.CANCELLED
            )
            parents = ChatMessage.objects.filter(pk__in=not_started).values("parent_id")
            ChatMessage.objects.filter(pk__in=parents, status=ChatMessage.Status.PENDING).update(
                status=ChatMessage.Status.CANCELLED
            )
    return Cancelled(
        conversation_id=str(message.conversation_id), not_started=not_started, streaming=streaming
    )


def answers_pending(*, seat_id: str) -> bool:
    return answer_next(seat_id=seat_id) is not None
