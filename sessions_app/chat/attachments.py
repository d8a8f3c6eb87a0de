"""Attachments: checking an uploaded file, storing it, asking a question with it, reading it back
for its owner, and giving what it holds to the model.

Checking happens entirely in memory before anything is written (type sniffed from the content,
extension and allow-list agreeing, image size checked before decoding, thumbnail rendered, text
taken out): a refused file leaves nothing behind. Storing writes the bytes (and the thumbnail)
through Django's storage API under random names, then the row; if any step fails, what was
already written is deleted again.
"""

from __future__ import annotations

import base64
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.utils.translation import gettext as _

from sessions_app import conf
from sessions_app.chat import frames, messages
from sessions_app.chat.attachments_sniff import (
    Refused,
    agree,
    allowed_sentence,
    extension_of,
    inspect_image,
    pdf_text,
    plain_text,
    sniff,
)
from sessions_app.chat.backends.base import ChatTurn
from sessions_app.models import Attachment, ChatMessage, Conversation

logger = logging.getLogger(__name__)

NAME_MAX = 255
__all__ = ["AttachmentNotFound", "Checked", "Refused", "attachment_check", "attachment_store"]


class AttachmentNotFound(LookupError):
    """No such file of the person (another person's file id looks the same)."""


def attachments_storage() -> Storage:
    """The storage of the "attachments" alias (settings.STORAGES): a local folder by default."""
    return storages["attachments"]


def clean_name(name: str) -> str:
    """The file's own name without any folder a client put in front of it, without control
    characters, at most 255 characters with its extension kept."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    if not name:
        return "file"
    if len(name) > NAME_MAX:
        extension = extension_of(name)[:16]
        name = name[: NAME_MAX - len(extension)] + extension
    return name


@dataclass(frozen=True)
class Checked:
    """A file that passed every check, with what will be stored."""

    name: str
    content_type: str
    data: bytes
    thumbnail: bytes | None
    text: str

    @property
    def size(self) -> int:
        return len(self.data)


def too_large(max_bytes: int) -> Refused:
    return Refused(413, "TOO_LARGE", _("This file is too large. ") + allowed_sentence(max_bytes))


def attachment_check(*, name: str, data: bytes) -> Checked:
    """Everything about the file, decided before anything is stored; raises Refused."""
    max_bytes = int(conf.get("MAX_UPLOAD_BYTES"))
    name = clean_name(name)
    if not data:
        raise Refused(400, "EMPTY_FILE", _("This file is empty."))
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    content_type = sniff(data, max_bytes)
    agree(name, content_type, max_bytes)
    max_chars = int(conf.get("ATTACHMENT_TEXT_CHARS"))
    thumbnail = None
    text = ""
    if content_type.startswith("image/"):
        facts = inspect_image(
            data,
            content_type,
            max_pixels=int(conf.get("MAX_IMAGE_PIXELS")),
            box=int(conf.get("THUMBNAIL_PX")),
        )
        thumbnail = facts.thumbnail
    elif content_type == "application/pdf":
        text = pdf_text(data, max_chars=max_chars)
    else:
        text = plain_text(data, max_chars=max_chars)
    return Checked(name=name, content_type=content_type, data=data, thumbnail=thumbnail, text=text)


def attachment_store(
    *, owner: Any, conversation: Any, checked: Checked, message: Any = None
) -> Any:
    """Writes the file (and its thumbnail) under random names, then its row. Nothing is left
    behind if any of it fails."""
    storage = attachments_storage()
    stem = uuid.uuid4().hex
    written: list[str] = []
    try:
        # Two levels of folders keep any one folder small; the names say nothing of the file.
        base = f"{stem[:2]}/{stem}"
        written.append(storage.save(base + extension_of(checked.name), ContentFile(checked.data)))
        thumbnail_name = ""
        if checked.thumbnail is not None:
            thumbnail_name = storage.save(base + "-thumb.webp", ContentFile(checked.thumbnail))
            written.append(thumbnail_name)
        return Attachment.objects.create(
            owner=owner,
            conversation=conversation,
            message=message,
            name=checked.name,
            content_type=checked.content_type,
            size=checked.size,
            storage_name=written[0],
            thumbnail_name=thumbnail_name,
            extracted_text=checked.text,
        )
    except BaseException:
        for name in written:
            _delete_quietly(storage, name)
        raise


def _delete_quietly(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:
        logger.warning("could not delete stored attachment %s", name, exc_info=True)


def attachment_ask(
    *, owner: Any, seat_id: str, conversation: Any, checked: Checked, content: str
) -> tuple[Any, messages.Asked]:
    """A question with the file attached, asked exactly like one from the page (same use-case,
    same placeholder, answered in the seat's order). Raises NotActive without an active seat
    (then nothing is stored), ConversationNotFound."""
    attachment = attachment_store(owner=owner, conversation=conversation, checked=checked)
    try:
        with transaction.atomic():
            asked = messages.message_ask(
                owner=owner,
                seat_id=seat_id,
                content=content,
                conversation_id=str(conversation.pk),
            )
            ChatMessage.objects.filter(pk=asked.question.pk).update(
                message_type=ChatMessage.Kind.FILE
            )
            Attachment.objects.filter(pk=attachment.pk).update(message=asked.question)
    except BaseException:
        attachment_delete(attachment)
        raise
    attachment.message = asked.question
    asked.question.message_type = ChatMessage.Kind.FILE  # as just written by the update
    return attachment, asked


def attachment_delete(attachment: Any) -> None:
    storage = attachments_storage()
    for name in (attachment.storage_name, attachment.thumbnail_name):
        if name:
            _delete_quietly(storage, name)
    Attachment.objects.filter(pk=attachment.pk).delete()


def attachment_get(*, owner: Any, file_id: object) -> Any:
    """The person's file; AttachmentNotFound for a malformed id, another person's file, or a
    file of a deleted conversation."""
    try:
        pk = uuid.UUID(str(file_id))
    except (ValueError, TypeError, AttributeError):
        raise AttachmentNotFound(str(file_id)) from None
    found = (
        Attachment.objects.filter(pk=pk, owner=owner)
        .exclude(conversation__status=Conversation.Status.DELETED)
        .first()
    )
    if found is None:
        raise AttachmentNotFound(str(file_id))
    return found


def attachment_bytes(attachment: Any, *, thumbnail: bool = False) -> bytes:
    name = attachment.thumbnail_name if thumbnail else attachment.storage_name
    if not name:
        raise AttachmentNotFound(str(attachment.pk))
    try:
        with attachments_storage().open(name, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError:
        raise AttachmentNotFound(str(attachment.pk)) from None


# --- reads: what the page and the API show ------------------------------------------------------


def file_url(attachment: Any) -> str:
    return f"/api/chat/files/{attachment.pk}"


def attachment_dict(attachment: Any) -> dict[str, Any]:
    return {
        "file_id": str(attachment.pk),
        "name": attachment.name,
        "type": attachment.content_type,
        "size": attachment.size,
        "file_url": file_url(attachment),
        "thumbnail_url": f"{file_url(attachment)}/thumbnail" if attachment.thumbnail_name else None,
    }


def attachments_of(message_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each message's attachments (one query for a whole page of messages)."""
    found: dict[int, list[dict[str, Any]]] = {}
    if not message_ids:
        return found
    for attachment in Attachment.objects.filter(message_id__in=message_ids).order_by("created_at"):
        found.setdefault(attachment.message_id or 0, []).append(attachment_dict(attachment))
    return found


def question_frame(
    asked: messages.Asked, attachment: Any, client_id: str | None, owner_name: str
) -> dict[str, Any]:
    """The `message` frame every page of the person gets: the same frame as for a question sent
    on the page (frames.question_frame), with the file (`client_id` lets the page that uploaded
    it recognise its own question)."""
    frame = frames.question_frame(asked, client_id=client_id, owner_name=owner_name)
    return {**frame, "attachments": [attachment_dict(attachment)]}


# --- what reaches the model -------------------------------------------------------------------


def with_files(rows: list[tuple[int, str, str]], *, question_id: int | None) -> list[ChatTurn]:
    """The model's turns from (message id, role, content): each message's files follow its
    text (the text taken out of PDF and text files, newest first until ATTACHMENT_TEXT_CHARS
    are used; an image is named), and the question's images go along as image parts when
    BACKEND_ACCEPTS_IMAGES says the model reads them."""
    by_message: dict[int, list[Any]] = {}
    for attachment in Attachment.objects.filter(message_id__in=[r[0] for r in rows]).order_by(
        "created_at"
    ):
        by_message.setdefault(attachment.message_id or 0, []).append(attachment)
    budget = int(conf.get("ATTACHMENT_TEXT_CHARS"))
    sees_images = bool(conf.get("BACKEND_ACCEPTS_IMAGES"))
    turns: list[ChatTurn] = []
    for pk, role, content in reversed(rows):
        parts = [content]
        images: list[str] = []
        for attachment in by_message.get(pk, []):
            if attachment.is_image:
                parts.append(f"[Attached image: {attachment.name}]")
                if sees_images and pk == question_id:
                    images.append(_data_url(attachment))
                continue
            text = attachment.extracted_text[: max(budget, 0)]
            budget -= len(text)
            parts.append(
                f"[Attached file: {attachment.name}]\n{text}\n[End of {attachment.name}]"
                if text
                else f"[Attached file: {attachment.name} (no text could be read)]"
            )
        turns.append(ChatTurn(role, "\n\n".join(p for p in parts if p), images=tuple(images)))
    turns.reverse()
    return turns


def _data_url(attachment: Any) -> str:
    data = base64.b64encode(attachment_bytes(attachment)).decode("ascii")
    return f"data:{attachment.content_type};base64,{data}"
