"""Service tokens: issued and revoked by staff, always audited. Only the hash is kept."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app.api.auth import token_cache_forget
from sessions_app.gate.services import audit


def api_token_issue(
    *, name: str, owner: Any, can_act_for_users: bool, actor: Any
) -> tuple[Any, str]:
    """Creates a service token; returns (row, raw token). Only the hash is kept."""
    from sessions_app.models import ApiToken

    with transaction.atomic():
        row, raw = ApiToken.issue(name=name, owner=owner, can_act_for_users=can_act_for_users)
        audit(
            actor=actor,
            action="token.create",
            target=name,
            detail={"owner": owner.get_username(), "can_act_for_users": can_act_for_users},
        )
    return row, raw


def api_token_revoke(*, token_id: int, actor: Any) -> bool:
    """Revokes a token at once (its next request is a 401); False if it was already revoked."""
    from sessions_app.models import ApiToken

    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if changed:
            audit(actor=actor, action="token.revoke", target=str(token_id))
    token_cache_forget()
    return bool(changed)
