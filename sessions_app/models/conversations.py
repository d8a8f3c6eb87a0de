"""Conversations: durable threads of messages, owned by a person and kept when seats end.

A seat (`ChatSession`) says who may generate now; a conversation outlives every seat. Deleting
is soft (`status=deleted`): the rows stay for accounting and the admin, the person no longer
sees them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

# How much of the first question becomes the title (one line): long enough to recognise the
# conversation in a sidebar, short enough to fit one row of it.
TITLE_FROM_QUESTION_CHARS = 60


def _trace_id() -> str:
    return uuid.uuid4().hex


def title_from_question(content: str) -> str:
    """The first ~60 characters of a question, on one line (whitespace runs folded)."""
    line = " ".join(content.split())
    if len(line) <= TITLE_FROM_QUESTION_CHARS:
        return line
    return line[: TITLE_FROM_QUESTION_CHARS - 1].rstrip() + "…"


class Conversation(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        ARCHIVED = "archived", pgettext_lazy("conversation status", "Archived")
        DELETED = "deleted", _("Deleted")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="conversations",
        verbose_name=_("owner"),
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # Set by the use-cases (not auto_now) so that migrations and imports keep the real times.
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    last_message_at = models.DateTimeField(_("last message"), null=True, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    trace_id = models.CharField(_("trace id"), max_length=32, default=_trace_id, editable=False)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes = [models.Index(fields=["owner", "status", "updated_at"])]

    def __str__(self) -> str:
        return self.title or str(self.id)[:8]
