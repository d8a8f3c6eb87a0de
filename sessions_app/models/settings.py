"""The live limits staff edit: one row, pushed to Redis whenever it is saved."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from sessions_app import conf


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
        verbose_name=_("max active sessions"),
        default=conf.DEFAULTS["MAX_ACTIVE_SESSIONS"],
        validators=_bounds("max_active_sessions"),
    )
    max_concurrent_queries = models.PositiveIntegerField(
        verbose_name=_("max generating queries"),
        default=conf.DEFAULTS["MAX_CONCURRENT_QUERIES"],
        validators=_bounds("max_concurrent_queries"),
    )
    idle_timeout_seconds = models.PositiveIntegerField(
        verbose_name=_("idle timeout (seconds)"),
        default=conf.DEFAULTS["IDLE_TIMEOUT_SECONDS"],
        validators=_bounds("idle_timeout_seconds"),
    )
    disconnect_grace_seconds = models.PositiveIntegerField(
        verbose_name=_("disconnect grace (seconds)"),
        default=conf.DEFAULTS["DISCONNECT_GRACE_SECONDS"],
        validators=_bounds("disconnect_grace_seconds"),
    )
    query_wait_timeout_seconds = models.PositiveIntegerField(
        verbose_name=_("query wait limit (seconds)"),
        default=conf.DEFAULTS["QUERY_WAIT_TIMEOUT_SECONDS"],
        validators=_bounds("query_wait_timeout_seconds"),
    )
    admissions_paused = models.BooleanField(verbose_name=_("admissions paused"), default=False)
    banner_message = models.CharField(
        verbose_name=_("banner for people waiting"),
        max_length=300,
        blank=True,
        help_text=_("Shown to everyone waiting, e.g. maintenance."),
    )
    updated_at = models.DateTimeField(verbose_name=_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("gate settings")
        verbose_name_plural = _("gate settings")

    def __str__(self) -> str:
        return str(_("Gate settings"))

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = 1
        self.full_clean()
        super().save(*args, **kwargs)
        # Redis hears of it after commit, through the post_save receiver the gate's services
        # connect in AppConfig.ready (a model never imports a use-case).

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
