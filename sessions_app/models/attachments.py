"""Files a person attached to a conversation: where the bytes are stored, what they are, and
the text taken out of them for the model.

The id is a random UUID (the file's URL is `/api/chat/files/<id>`, served only to its owner), and
the bytes live under a random storage name, so neither a URL nor a storage path can be guessed
from a person's name, the file's name or the order of uploads.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from sessions_app.models.conversations import Conversation
from sessions_app.models.messages import ChatMessage


class Attachment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("owner"),
    )
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("conversation"),
    )
    # The question it came with; empty for a file uploaded on its own.
    message = models.ForeignKey(
        ChatMessage,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attachments",
        verbose_name=_("message"),
    )
    name = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    storage_name = models.CharField(_("stored as"), max_length=255)
    thumbnail_name = models.CharField(_("thumbnail stored as"), max_length=255, blank=True)
    extracted_text = models.TextField(_("text taken out"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} B)"

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")
