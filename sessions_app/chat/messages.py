"""Chat messages of a seat: recorded as asked, answered one at a time in the order sent."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from sessions_app import metrics
from sessions_app.gate.services import NotActive, session_touch


def _next_sequence(session_id: str) -> int:
    from django.db.models import Max

    from sessions_app.models import ChatMessage

    top = ChatMessage.objects.filter(session_id=uuid.UUID(str(session_id))).aggregate(
        top=Max("sequence")
    )["top"]
    return int(top or 0) + 1


def _message_create(*, session_id: str, role: str, content: str, status: str) -> Any:
    """Appends one message with the next sequence number (retried if two writers race)."""
    from django.db import IntegrityError

    from sessions_app.models import ChatMessage

    for _attempt in range(5):
        try:
            with transaction.atomic():
                return ChatMessage.objects.create(
                    session_id=session_id,
                    sequence=_next_sequence(session_id),
                    role=role,
                    content=content,
                    status=status,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not allocate a message sequence for session {session_id}")


def chat_message_add(*, session_id: str, content: str) -> Any:
    """Records the person's message as waiting for an answer; counts as chat activity.

    Raises NotActive unless the session is active (queued people cannot chat yet).
    """
    touched = session_touch(session_id=session_id, kind="activity")
    if touched.state != "active":
        raise NotActive(session_id)
    from sessions_app.models import ChatMessage

    message = _message_create(
        session_id=session_id,
        role=ChatMessage.Role.USER,
        content=content,
        status=ChatMessage.Status.PENDING,
    )
    metrics.chat_event("chat_messages")
    return message


def chat_question_next(*, session_id: str) -> Any:
    """The oldest unanswered message of the session. Call it only while holding the
    session's generation slot: one lease per session makes the holder the only answerer,
    so messages from two tabs on two processes are answered one at a time, in order."""
    from sessions_app.models import ChatMessage

    return (
        ChatMessage.objects.filter(
            session_id=uuid.UUID(str(session_id)),
            role=ChatMessage.Role.USER,
            status=ChatMessage.Status.PENDING,
        )
        .order_by("sequence")
        .first()
    )


def chat_answer_start(*, session_id: str) -> Any:
    from sessions_app.models import ChatMessage

    return _message_create(
        session_id=session_id,
        role=ChatMessage.Role.ASSISTANT,
        content="",
        status=ChatMessage.Status.PENDING,
    )


def chat_answer_finish(
    *,
    question_id: int,
    answer_id: int | None,
    content: str,
    status: str,
    tokens: int = 0,
    latency_ms: int | None = None,
) -> None:
    """Records how an answer ended: done, cancelled (Stop) or failed; the question with it."""
    from sessions_app.models import ChatMessage

    with transaction.atomic():
        ChatMessage.objects.filter(pk=question_id).update(status=status)
        if answer_id is not None:
            ChatMessage.objects.filter(pk=answer_id).update(
                content=content, status=status, tokens=tokens, latency_ms=latency_ms
            )
    # For /metrics (Redis, so every process reports the same totals); never fails the call.
    event = None
    if status == ChatMessage.Status.FAILED:
        event = "backend_errors" if answer_id is not None else "capacity_timeouts"
    elif status == ChatMessage.Status.CANCELLED:
        event = "cancelled"
    seconds = latency_ms / 1000 if answer_id is not None and latency_ms is not None else None
    if seconds is not None or event is not None:
        metrics.answer_observe(seconds=seconds, event=event)


def chat_question_cancel(*, session_id: str, message_id: int) -> bool:
    """Stop before the answer started: the waiting message will not be answered."""
    from sessions_app.models import ChatMessage

    return bool(
        ChatMessage.objects.filter(
            pk=message_id,
            session_id=uuid.UUID(str(session_id)),
            role=ChatMessage.Role.USER,
            status=ChatMessage.Status.PENDING,
        ).update(status=ChatMessage.Status.CANCELLED)
    )
