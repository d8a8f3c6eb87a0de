"""Alert thresholds staff set live (one row) and the alerts raised against them.

An `Alert` row is born *pending* when its condition first holds (`since`), becomes *raised*
when the condition has held long enough (`raised_at`; audited and mailed), and *resolved* when
it stops holding (`resolved_at`; audited and mailed). A pending alert whose condition clears
before it is raised is deleted: nobody was told, so there is nothing to resolve. At most one
unresolved alert per kind (a database constraint, so two evaluators cannot raise it twice).
"""

from __future__ import annotations

from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AlertSettings(models.Model):
    """The thresholds. Zero turns an alert off; one row, edited in the console or the admin."""

    EDITABLE_FIELDS = (
        "queue_length",
        "queue_minutes",
        "wait_p90_seconds",
        "errors_per_minute",
        "redis_down",
    )

    queue_length = models.PositiveIntegerField(
        _("queue longer than"),
        default=0,
        validators=[MaxValueValidator(1_000_000)],
        help_text=_("People waiting. 0 turns this alert off."),
    )
    queue_minutes = models.PositiveIntegerField(
        _("for at least (minutes)"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text=_("How long the queue must stay that long before staff are told."),
    )
    wait_p90_seconds = models.PositiveIntegerField(
        _("wait p90 above (seconds)"),
        default=0,
        validators=[MaxValueValidator(24 * 3600)],
        help_text=_("90th percentile of the waits in the last 15 minutes. 0 turns it off."),
    )
    errors_per_minute = models.PositiveIntegerField(
        _("generation errors per minute above"),
        default=0,
        validators=[MaxValueValidator(1_000_000)],
        help_text=_("Answers the model backend failed, in one minute. 0 turns it off."),
    )
    redis_down = models.BooleanField(
        _("alert when Redis is unreachable"),
        default=True,
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("alert thresholds")
        verbose_name_plural = _("alert thresholds")

    def __str__(self) -> str:
        return str(_("Alert thresholds"))

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = 1
        self.full_clean()
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> AlertSettings:
        obj, _created = cls.objects.get_or_create(pk=1)
        return obj


class Alert(models.Model):
    class Kind(models.TextChoices):
        QUEUE = "queue", _("Queue too long")
        WAIT = "wait", _("Waits too long")
        ERRORS = "errors", _("Generation errors")
        REDIS = "redis", _("Redis unreachable")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    since = models.DateTimeField(_("condition since"), default=timezone.now)
    raised_at = models.DateTimeField(_("raised"), null=True, blank=True, db_index=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    value = models.FloatField(_("value"), default=0)
    threshold = models.FloatField(_("threshold"), default=0)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-since"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_alert_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.since:%Y-%m-%d %H:%M})"
