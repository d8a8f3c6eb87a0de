"""Chat messages: a tree per conversation (regenerate and edit add siblings; nothing is lost).

Each message follows its `parent` in its branch; the thread shown is one path root→leaf. The
integer pk is the send order, so the newest message of a conversation is always a leaf.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from sessions_app.models.conversations import Conversation
from sessions_app.models.seats import ChatSession

# Sent after a queryset `update` of messages, with `conversation_ids` (a set): saves and deletes
# send Django's own signals, but `update` sends none, and the history cache
# (chat/history_cache.py, wired in apps.py) must hear of every write.
messages_updated = Signal()


class ChatMessageQuerySet(models.QuerySet["ChatMessage"]):
    def update(self, **kwargs: Any) -> int:
        conversation_ids = set(self.order_by().values_list("conversation_id", flat=True).distinct())
        count = super().update(**kwargs)
        if count:
            messages_updated.send(sender=self.model, conversation_ids=conversation_ids)
        return count


class ChatMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("Person")
        ASSISTANT = "assistant", _("Assistant")
        SYSTEM = "system", _("System")

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        FILE = "file", _("File")
        SYSTEM = "system", _("System")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        STREAMING = "streaming", _("Being written")
        DONE = "done", _("Answered")
        CANCELLED = "cancelled", _("Stopped")
        FAILED = "failed", _("Failed")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("conversation"),
    )
    # The seat that asked (accounting); a conversation outlives its seats.
    seat = models.ForeignKey(
        ChatSession,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("seat"),
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("follows"),
    )
    sender_type = models.CharField(_("sender"), max_length=10, choices=Role.choices)
    message_type = models.CharField(
        _("kind"), max_length=10, choices=Kind.choices, default=Kind.TEXT
    )
    content = models.TextField(_("content"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.DONE
    )
    tokens_used = models.PositiveIntegerField(_("tokens used"), default=0)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    # What a program sent along with a question (`metadata` of POST .../messages): kept and
    # shown back, never interpreted.
    client_metadata = models.JSONField(_("client metadata"), default=dict, blank=True)
    edited = models.BooleanField(_("edited"), default=False)
    edited_at = models.DateTimeField(_("edited at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    objects = ChatMessageQuerySet.as_manager()

    class Meta:
        ordering = ["conversation", "id"]
        verbose_name = _("chat message")
        verbose_name_plural = _("chat messages")
        indexes = [
            # The answerer's read: the oldest pending placeholder of a seat.
            models.Index(fields=["seat", "status"]),
            models.Index(fields=["status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.pk} {self.sender_type}"
