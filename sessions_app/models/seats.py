"""Seats: the admission session record (who may generate now, and how each seat ended)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ChatSession(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        ACTIVE = "active", _("Active")
        CLOSED = "closed", _("Closed")

    class Lane(models.TextChoices):
        NORMAL = "normal", _("Normal")
        PRIORITY = "priority", _("Priority")

    class Reason(models.TextChoices):
        USER = "user", _("Left")
        EXPIRED = "expired", _("Idle too long")
        ABANDONED = "abandoned", _("No page open")
        ADMIN = "admin", _("Closed by staff")
        LOST = "lost", _("Lost from the live store")

    class Via(models.TextChoices):
        PAGE = "page", _("Chat page")
        API = "api", _("API")

    id = models.UUIDField(
        verbose_name=_("id"), primary_key=True, default=uuid.uuid4, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("person"),
        on_delete=models.CASCADE,
        related_name="chat_sessions",
    )
    state = models.CharField(
        verbose_name=_("state"), max_length=10, choices=State.choices, default=State.QUEUED
    )
    lane = models.CharField(
        verbose_name=_("lane"), max_length=10, choices=Lane.choices, default=Lane.NORMAL
    )
    ticket = models.BigIntegerField(verbose_name=_("ticket"), default=0)
    opened_via = models.CharField(
        verbose_name=_("opened via"), max_length=10, choices=Via.choices, default=Via.PAGE
    )
    client_session_id = models.CharField(
        verbose_name=_("client reference"),
        max_length=200,
        blank=True,
        help_text=_("The caller's own reference (API), echoed back."),
    )
    admitted_over_limit = models.BooleanField(
        verbose_name=_("admitted over the limit"), default=False
    )
    created_at = models.DateTimeField(verbose_name=_("opened"), default=timezone.now)
    activated_at = models.DateTimeField(verbose_name=_("admitted"), null=True, blank=True)
    closed_at = models.DateTimeField(verbose_name=_("ended"), null=True, blank=True)
    close_reason = models.CharField(
        verbose_name=_("how it ended"), max_length=10, choices=Reason.choices, blank=True
    )
    close_note = models.CharField(
        verbose_name=_("note to the person"),
        max_length=300,
        blank=True,
        help_text=_("Shown to the person when staff close it."),
    )

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"])]
        permissions = [
            ("priority", "Queues in the priority lane"),
            ("steer_gate", "Can steer the gate (close, promote, pause, limits)"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.state} {str(self.id)[:8]}"

    @property
    def is_live(self) -> bool:
        return self.state != self.State.CLOSED
