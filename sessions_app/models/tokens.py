"""Service clients' bearer tokens (only the hash is kept)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A service client's bearer token. Only its hash is stored; the token is shown once."""

    name = models.CharField(verbose_name=_("name"), max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    token_hash = models.CharField(
        verbose_name=_("token hash"), max_length=64, unique=True, editable=False
    )
    prefix = models.CharField(
        verbose_name=_("prefix"), max_length=12, editable=False, help_text=_("First characters.")
    )
    can_act_for_users = models.BooleanField(
        verbose_name=_("may act for any user"),
        default=False,
        help_text=_("May name any user_id (create, close, position)."),
    )
    created_at = models.DateTimeField(verbose_name=_("issued"), default=timezone.now)
    last_used_at = models.DateTimeField(verbose_name=_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(verbose_name=_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
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
