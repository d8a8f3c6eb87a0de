"""The durable record: sessions and how they ended, chat messages, live settings, audit, tokens.

Redis holds the live truth for admission (admission.py); these rows are what an operator reads
afterwards and what `reconcile_sessions` compares Redis against.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from sessions_app import conf


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

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    lane = models.CharField(max_length=10, choices=Lane.choices, default=Lane.NORMAL)
    ticket = models.BigIntegerField(default=0)
    opened_via = models.CharField(max_length=10, choices=Via.choices, default=Via.PAGE)
    client_session_id = models.CharField(
        max_length=200, blank=True, help_text=_("The caller's own reference (API), echoed back.")
    )
    admitted_over_limit = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=10, choices=Reason.choices, blank=True)
    close_note = models.CharField(
        max_length=300, blank=True, help_text=_("Shown to the person when staff close it.")
    )

    class Meta:
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


class ChatMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("Person")
        ASSISTANT = "assistant", _("Assistant")
        SYSTEM = "system", _("System")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        DONE = "done", _("Answered")
        CANCELLED = "cancelled", _("Stopped")
        FAILED = "failed", _("Failed")

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DONE)
    tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["session", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["session", "sequence"], name="unique_message_seq")
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.sequence} {self.role}"


def _bounds(name: str) -> list[Any]:
    low, high = conf.LIMIT_BOUNDS[name]
    return [MinValueValidator(low), MaxValueValidator(high)]


class GateSettings(models.Model):
    """The live limits: one row. Saving it pushes the values to Redis at once."""

    # What staff may change (console, admin, set_limits); everything else is derived.
    EDITABLE_FIELDS = (
        "max_active_sessions",
        "max_concurrent_queries",
        "idle_timeout_seconds",
        "disconnect_grace_seconds",
        "query_wait_timeout_seconds",
        "admissions_paused",
        "banner_message",
    )

    max_active_sessions = models.PositiveIntegerField(
        default=conf.DEFAULTS["MAX_ACTIVE_SESSIONS"], validators=_bounds("max_active_sessions")
    )
    max_concurrent_queries = models.PositiveIntegerField(
        default=conf.DEFAULTS["MAX_CONCURRENT_QUERIES"],
        validators=_bounds("max_concurrent_queries"),
    )
    idle_timeout_seconds = models.PositiveIntegerField(
        default=conf.DEFAULTS["IDLE_TIMEOUT_SECONDS"], validators=_bounds("idle_timeout_seconds")
    )
    disconnect_grace_seconds = models.PositiveIntegerField(
        default=conf.DEFAULTS["DISCONNECT_GRACE_SECONDS"],
        validators=_bounds("disconnect_grace_seconds"),
    )
    query_wait_timeout_seconds = models.PositiveIntegerField(
        default=conf.DEFAULTS["QUERY_WAIT_TIMEOUT_SECONDS"],
        validators=_bounds("query_wait_timeout_seconds"),
    )
    admissions_paused = models.BooleanField(default=False)
    banner_message = models.CharField(
        max_length=300, blank=True, help_text=_("Shown to everyone waiting, e.g. maintenance.")
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "gate settings"
        verbose_name_plural = "gate settings"

    def __str__(self) -> str:
        return "Gate settings"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = 1
        self.full_clean()
        super().save(*args, **kwargs)
        transaction.on_commit(self.push_to_redis)

    def push_to_redis(self) -> list[str]:
        """Writes the limits to Redis; returns sessions promoted by a raised limit."""
        from sessions_app import services

        return services.limits_push(self)

    @classmethod
    def load(cls) -> GateSettings:
        obj, _created = cls.objects.get_or_create(
            pk=1,
            defaults={
                "max_active_sessions": conf.get("MAX_ACTIVE_SESSIONS"),
                "max_concurrent_queries": conf.get("MAX_CONCURRENT_QUERIES"),
                "idle_timeout_seconds": conf.get("IDLE_TIMEOUT_SECONDS"),
                "disconnect_grace_seconds": conf.get("DISCONNECT_GRACE_SECONDS"),
                "query_wait_timeout_seconds": conf.get("QUERY_WAIT_TIMEOUT_SECONDS"),
            },
        )
        return obj

    def limits(self) -> dict[str, int]:
        return {
            "max_active_sessions": self.max_active_sessions,
            "max_concurrent_queries": self.max_concurrent_queries,
            "idle_timeout_seconds": self.idle_timeout_seconds,
            "disconnect_grace_seconds": self.disconnect_grace_seconds,
            "query_wait_timeout_seconds": self.query_wait_timeout_seconds,
            "lease_ttl_seconds": int(conf.get("LEASE_TTL_SECONDS")),
            "priority_lead": int(conf.get("PRIORITY_LEAD")),
            "admissions_paused": int(self.admissions_paused),
        }

    def clean(self) -> None:
        if self.pk not in (None, 1):
            raise ValidationError("There is only one GateSettings row.")


class AuditEvent(models.Model):
    """One staff (or operator) action: who did what to whom, when."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=50)
    target = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A service client's bearer token. Only its hash is stored; the token is shown once."""

    name = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text=_("First characters."))
    can_act_for_users = models.BooleanField(
        default=False, help_text=_("May name any user_id (create, close, position).")
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, *, name: str, owner: Any, can_act_for_users: bool = False) -> tuple[Any, str]:
        """Creates a token; returns (row, raw token). The raw token is never stored."""
        raw = "cg_" + secrets.token_urlsafe(32)
        row = cls.objects.create(
            name=name,
            owner=owner,
            token_hash=hash_token(raw),
            prefix=raw[:10],
            can_act_for_users=can_act_for_users,
        )
        return row, raw

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
