"""Conversation use-cases: create, rename, archive, restore, delete (soft), and the lookups that
every surface (socket, HTTP API, page) makes through them so that another person's id is
always "not found". Each change is pushed as `conversation.updated` to the person's pages.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app import notifications
from sessions_app.models import ChatMessage, Conversation

TITLE_MAX = 200


class ConversationNotFound(LookupError):
    """No such conversation of this person (or it was deleted): one answer for both, so ids
    of other people's conversations cannot be probed."""


class InvalidChange(ValueError):
    """A change the contract does not allow (bad title, unknown status); the text says which."""


def _parse_id(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise ConversationNotFound(str(value)) from None


def conversation_get(*, owner: Any, conversation_id: object, for_update: bool = False) -> Any:
    """The person's conversation, not deleted; ConversationNotFound otherwise."""
    rows = Conversation.objects.filter(owner=owner).exclude(status=Conversation.Status.DELETED)
    if for_update:
        rows = rows.select_for_update()
    found = rows.filter(pk=_parse_id(conversation_id)).first()
    if found is None:
        raise ConversationNotFound(str(conversation_id))
    return found


def conversation_frame(conversation: Any) -> dict[str, Any]:
    return {
        "type": "conversation.updated",
        "conversation": {
            "session_id": str(conversation.pk),
            "title": conversation.title,
            "status": conversation.status,
            "updated_at": conversation.updated_at.isoformat(),
            "last_message_at": (
                conversation.last_message_at.isoformat() if conversation.last_message_at else None
            ),
        },
    }


def conversation_announce(conversation: Any) -> None:
    """Tells every open page of the owner, once the change is committed."""
    frame = conversation_frame(conversation)
    transaction.on_commit(lambda: notifications.chat_frame(conversation.owner_id, frame))


def _clean_title(title: object) -> str:
    if not isinstance(title, str):
        raise InvalidChange("`title` must be text.")
    if len(title) > TITLE_MAX:
        raise InvalidChange(f"`title` may have at most {TITLE_MAX} characters.")
    if "\x00" in title:  # PostgreSQL text cannot hold NUL
        raise InvalidChange("`title` must not contain NUL characters.")
    return " ".join(title.split())


def conversation_create(
    *, owner: Any, title: object = None, metadata: object = None, announce: bool = True
) -> Any:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidChange("`metadata` must be a JSON object.")
    if "\\u0000" in json.dumps(metadata):  # PostgreSQL jsonb cannot hold NUL
        raise InvalidChange("`metadata` must not contain NUL characters.")
    conversation = Conversation.objects.create(
        owner=owner, title=_clean_title("" if title is None else title), metadata=metadata
    )
    if announce:
        conversation_announce(conversation)
    return conversation


def conversation_update(
    *, owner: Any, conversation_id: object, title: object = None, status: object = None
) -> Any:
    """Rename and/or archive ("archived") or restore ("active")."""
    allowed = (Conversation.Status.ACTIVE, Conversation.Status.ARCHIVED)
    if status is not None and status not in allowed:
        raise InvalidChange('`status` must be "active" or "archived".')
    new_title = _clean_title(title) if title is not None else None
    with transaction.atomic():
        conversation = conversation_get(
            owner=owner, conversation_id=conversation_id, for_update=True
        )
        if new_title is not None:
            conversation.title = new_title
        if status is not None:
            conversation.status = status
        conversation.updated_at = timezone.now()
        conversation.save(update_fields=["title", "status", "updated_at"])
        conversation_announce(conversation)
    return conversation


def conversation_delete(*, owner: Any, conversation_id: object) -> Any:
    """Soft: the rows stay (accounting, the admin); the person no longer sees it."""
    with transaction.atomic():
        conversation = conversation_get(
            owner=owner, conversation_id=conversation_id, for_update=True
        )
        conversation.status = Conversation.Status.DELETED
        conversation.updated_at = timezone.now()
        conversation.save(update_fields=["status", "updated_at"])
        # Answers not started yet would spend a generation on a thread nobody can read.
        conversation.messages.filter(status=ChatMessage.Status.PENDING).update(
            status=ChatMessage.Status.CANCELLED
        )
        conversation_announce(conversation)
    return conversation
