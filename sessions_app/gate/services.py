"""Use-cases that change the gate: the Redis transition first, then the SQL record, then notices.

Consumers, views, the API, admin actions and management commands all call these functions; none
of them touches admission state or the session record directly. The order matters: Redis is the
live truth, so its transition decides what happened and journals it in the same script; the SQL
record follows from the journal in batched transactions (gate/journal.py), and people are
notified only after the transaction that recorded their change commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sessions_app import notifications
from sessions_app.gate import journal
from sessions_app.gate.admission import (
    CloseResult,
    GateUnavailable,
    OpenResult,
    PromoteResult,
    SweepResult,
    TouchResult,
    get_manager,
)
from sessions_app.models import AuditEvent, ChatSession, GateSettings

logger = logging.getLogger(__name__)

__all__ = ["GateUnavailable"]


class NotActive(Exception):
    """The session is not active (queued, closed, or never existed)."""


def redis_user_key(user: Any) -> str:
    """How Redis names a person: the primary key, stable across username changes."""
    return str(user.pk)


# Who holds the priority permission (directly or through a group) is read once per
# LANE_CACHE_SECONDS per process, not per open: the permission join costs more than the whole
# Redis transition. A grant or revocation applies to sessions opened after that delay.
LANE_CACHE_SECONDS = 30.0
# Ids per presence script call: bounded, so that one call never holds Redis for long.
PRESENCE_BATCH = 1000
_priority_cache: tuple[float, frozenset[int]] = (0.0, frozenset())


def _priority_user_ids() -> frozenset[int]:
    global _priority_cache
    now = time.monotonic()
    if _priority_cache[0] > now:
        return _priority_cache[1]
    User = get_user_model()
    holders = User.objects.filter(
        Q(user_permissions__codename="priority",
          user_permissions__content_type__app_label="sessions_app")
        | Q(groups__permissions__codename="priority",
            groups__permissions__content_type__app_label="sessions_app")
    ).values_list("pk", flat=True)  # fmt: skip
    ids = frozenset(holders)
    _priority_cache = (now + LANE_CACHE_SECONDS, ids)
    return ids


def forget_priority_holders() -> None:
    """Drops the cached holders (tests, and after an admin changes permissions)."""
    global _priority_cache
    _priority_cache = (0.0, frozenset())


def lane_for(user: Any) -> str:
    """The priority lane needs the explicit permission; superusers are not put in it by default."""
    if user.pk in _priority_user_ids():
        return ChatSession.Lane.PRIORITY.value
    return ChatSession.Lane.NORMAL.value


# --- the SQL record of what Redis decided ------------------------------------------------------
# Every transition script journals its changes (gate/journal.py); `journal.after_transition()`
# writes them to the record and sends the notices, at once ("inline") or from the process's
# flusher thread ("background"), so a request does not wait for the database.


def record_lost(session_ids: Sequence[str]) -> None:
    """Closes as `lost` record rows whose sessions Redis no longer holds (reconcile): no script
    ran for them, so no journal entry will; the record and the people are told here."""
    if not session_ids:
        return
    ids = list(session_ids)
    lost = ChatSession.Reason.LOST.value
    with transaction.atomic():
        ChatSession.objects.filter(id__in=ids).exclude(state=ChatSession.State.CLOSED).update(
            state=ChatSession.State.CLOSED, closed_at=timezone.now(), close_reason=lost
        )
        transaction.on_commit(
            lambda: notifications.gate_changes(activated=[], closed=dict.fromkeys(ids, lost))
        )


def audit(
    *, actor: Any, action: str, target: str = "", detail: dict[str, Any] | None = None
) -> None:
    label = getattr(actor, "get_username", lambda: str(actor or "system"))()
    AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_label=label or "system",
        action=action,
        target=target,
        detail=detail or {},
    )


# --- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenOutcome:
    session_id: str
    state: str
    position: int
    created: bool
    # The reference the session was opened with (the first caller's), "" for none.
    client_session_id: str = ""


def session_open(*, user: Any, via: str = "page", client_session_id: str = "") -> OpenOutcome:
    """Opens the person's session or returns their live one (one per person).

    Several callers may race for one person's first session (two tabs, a client retrying, two
    processes). Redis decides which of them created it and journals the record's row with what
    that caller sent (`via`, its reference), once; every caller is answered with those."""
    manager = get_manager()
    lane = lane_for(user)
    client_ref = client_session_id[:200]
    result: OpenResult = manager.open(
        redis_user_key(user), lane=lane, via=via, client_ref=client_ref
    )
    kept_ref = result.client_ref
    if result.created or result.promoted or result.expired or result.abandoned:
        journal.after_transition()
    if kept_ref is None:
        # Opened before Redis kept the reference: the record has it (or the row is lost).
        kept_ref = (
            ChatSession.objects.filter(id=result.session_id)
            .values_list("client_session_id", flat=True)
            .first()
        ) or ""
    return OpenOutcome(
        result.session_id, result.state, result.position, result.created, kept_ref or ""
    )


def session_close(
    *,
    session_id: str,
    reason: str,
    actor: Any = None,
    note: str = "",
    only_if_state: str = "",
) -> CloseResult:
    """Ends one session for `reason` and promotes into the freed seat.

    With `only_if_state`, nothing happens unless the session is in that state at that moment
    (`result.refused_state` then says what it was)."""
    result = get_manager().close(
        str(session_id), reason=reason, only_if_state=only_if_state, note=note
    )
    if result.refused_state:
        return result
    journal.after_transition()
    if actor is not None and reason == ChatSession.Reason.ADMIN:
        audit(
            actor=actor,
            action="session.close",
            target=str(session_id),
            detail={"note": note, "was": result.previous_state or "not live"},
        )
    return result


def session_live_for_user(user: Any) -> str | None:
    return get_manager().session_of_user(redis_user_key(user))


def session_touch(*, session_id: str, kind: str) -> TouchResult:
    """Presence (page), poll (API) or activity (chat message); ends it if already past due."""
    result = get_manager().touch(str(session_id), kind=kind)
    if result.state in ("expired", "abandoned") or result.promoted:
        journal.after_transition()
    return result


def sessions_touch_presence(session_ids: Sequence[str]) -> dict[str, str]:
    """Presence for many open pages in one script call per PRESENCE_BATCH (one process's
    heartbeat): the same rule as `session_touch(kind="presence")` for each. Returns the
    sessions it found past due and ended, with how ({id: "expired"|"abandoned"})."""
    closed: dict[str, str] = {}
    promoted: list[str] = []
    manager = get_manager()
    ids = [str(s) for s in session_ids]
    for start in range(0, len(ids), PRESENCE_BATCH):
        flat, heads = manager._run("touch_many", *ids[start : start + PRESENCE_BATCH])
        closed.update(zip(flat[::2], flat[1::2], strict=True))
        promoted += heads
    if closed or promoted:
        journal.after_transition()
    return closed


def sessions_sweep() -> SweepResult:
    """One sweep: expire idle, drop abandoned, reclaim dead leases, promote."""
    result = get_manager().sweep()
    if result.changed:
        journal.after_transition()
        logger.info(
            "sweep: %d expired, %d abandoned, %d promoted, %d leases reclaimed",
            len(result.expired),
            len(result.abandoned),
            len(result.promoted),
            result.reclaimed,
        )
    return result


def session_promote(*, session_id: str, how: str, actor: Any) -> PromoteResult:
    """Staff: admit now (even above the limit) or move to the front of the queue."""
    result = get_manager().promote(str(session_id), how=how)
    if result.outcome == "admitted":
        journal.after_transition()  # the record, the person and the queue are told from there
    elif result.outcome == "front":
        notifications.queue_changed()  # nobody's state changed; places did
    if result.outcome != "not_queued":
        with transaction.atomic():
            audit(
                actor=actor,
                action=f"session.{how}",
                target=str(session_id),
                detail={"over_limit": result.over_limit},
            )
    return result


# --- limits ------------------------------------------------------------------------------------


def limits_push(gate: GateSettings) -> list[str]:
    """Writes GateSettings to Redis; a raised limit or a resume promotes at once."""
    promoted = get_manager().set_limits(gate.limits())
    if promoted:
        journal.after_transition()
    else:
        notifications.queue_changed()
    return promoted


def limits_set(*, actor: Any, **changes: Any) -> GateSettings:
    """Changes live limits (GateSettings field names); raises ValidationError if out of bounds."""
    unknown = set(changes) - set(GateSettings.EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        gate = GateSettings.objects.select_for_update().filter(pk=1).first() or GateSettings.load()
        before = {name: getattr(gate, name) for name in changes}
        for name, value in changes.items():
            setattr(gate, name, value)
        gate.save()  # full_clean() inside: bounds are enforced before anything is written
        audit(
            actor=actor,
            action="limits.set",
            target="gate",
            detail={"before": before, "after": changes},
        )
    if "banner_message" in changes:
        notifications.banner_changed(gate.banner_message)
    return gate


def limits_recorded() -> dict[str, int]:
    """The limits as the record holds them (read when Redis has lost its copy)."""
    try:
        return GateSettings.load().limits()
    except Exception:  # no database at hand (or an async context): the settings' defaults
        logger.warning("could not read GateSettings; using default limits", exc_info=True)
        from sessions_app.gate.admission import default_limits

        return default_limits()


def limits_sync_from_record() -> GateSettings:
    """At start-up (and after a Redis restart): push the recorded limits into Redis."""
    gate = GateSettings.load()
    limits_push(gate)
    return gate


# --- operator use-cases (management commands, issue 5) -----------------------------------------


class NotQueued(Exception):
    """The session is not waiting in the queue (it is active, or no longer live)."""

    def __init__(self, session_id: str, state: str) -> None:
        super().__init__(f"session {session_id} is {state or 'not live'}, not queued")
        self.session_id = session_id
        self.state = state or "closed"


def session_remove_from_queue(*, session_id: str, actor: Any, note: str = "") -> CloseResult:
    """Staff: takes a queued person out of the line (reason `admin`); active ones are refused.

    The state check and the close are one script, so a person promoted a moment before is
    refused (NotQueued), never closed by mistake.
    """
    result = session_close(
        session_id=str(session_id),
        reason=ChatSession.Reason.ADMIN,
        actor=actor,
        note=note,
        only_if_state="queued",
    )
    if result.refused_state:
        raise NotQueued(
            str(session_id), "" if result.refused_state == "none" else result.refused_state
        )
    return result
