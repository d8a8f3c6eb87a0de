"""The audit log: one row per staff or operator action."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditEvent(models.Model):
    """One staff (or operator) action: who did what to whom, when."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
    )
    actor_label = models.CharField(verbose_name=_("actor name"), max_length=150, blank=True)
    action = models.CharField(verbose_name=_("action"), max_length=50)
    target = models.CharField(verbose_name=_("target"), max_length=200, blank=True)
    detail = models.JSONField(verbose_name=_("detail"), default=dict, blank=True)
    created_at = models.DateTimeField(verbose_name=_("time"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"
