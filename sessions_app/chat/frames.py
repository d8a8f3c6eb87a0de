"""The chat frames every surface sends (a page's socket, a program's socket, an SSE stream), so
a question asked over HTTP shows up on the pages exactly as one asked on a page.

`with_protocol_fields` adds the earlier chat service's fields (reference 001: `sender_type`,
`sender_id`, `timestamp`) to a frame at the moment it is delivered; it only adds, never renames
or overwrites a field the page already reads.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

ASSISTANT_ID = "assistant"
# Frames written by the assistant (an answer being streamed or ended).
_ASSISTANT_FRAMES = ("stream_start", "stream_chunk", "stream_end")


def question_frame(asked: Any, *, client_id: Any, owner_name: str) -> dict[str, Any]:
    """The `message` frame announcing a recorded question (and its answer's id)."""
    question = asked.question
    return {
        "type": "message",
        "message_id": question.pk,
        "conversation_id": str(asked.conversation.pk),
        "parent_id": question.parent_id,
        "sender_type": "user",
        "sender_id": owner_name,
        "message_type": question.message_type,
        "content": question.content,
        "client_id": client_id,
        "created_at": question.created_at.isoformat(),
        "timestamp": question.created_at.isoformat(),
        "edited": question.edited,
        "answer_id": asked.answer.pk,
    }


def with_protocol_fields(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame plus `timestamp` (and `sender_type`/`sender_id` on the assistant's frames)."""
    extra: dict[str, Any] = {}
    if "timestamp" not in frame:
        extra["timestamp"] = timezone.now().isoformat()
    if frame.get("type") in _ASSISTANT_FRAMES:
        extra.setdefault("sender_type", "assistant")
        extra.setdefault("sender_id", ASSISTANT_ID)
    if not extra:
        return frame
    return {**extra, **frame}
