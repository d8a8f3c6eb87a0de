"""Use-cases that change the gate: the Redis transition first, then the SQL record, then notices.

Consumers, views, the API, admin actions and management commands all call these functions; none
of them touches admission state or the session record directly. The order matters: Redis is the
live truth, so its transition decides what happened; the SQL record follows in one transaction,
and people are notified only after that transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sessions_app import conf, metrics, notifications
from sessions_app.admission import (
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


class CapacityTimeout(Exception):
    """No generation slot came free within the query wait limit."""


class SlotLost(Exception):
    """A generation's lease ran out before it could be renewed (the slot may serve another)."""


def redis_user_key(user: Any) -> str:
    """How Redis names a person: the primary key, stable across username changes."""
    return str(user.pk)


# Who holds the priority permission (directly or through a group) is read once per
# LANE_CACHE_SECONDS per process, not per open: the permission join costs more than the whole
# Redis transition. A grant or revocation applies to sessions opened after that delay.
LANE_CACHE_SECONDS = 30.0
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


def _record_changes(
    *,
    promoted: Sequence[str] = (),
    closed: dict[str, str] | None = None,
    note: str = "",
    queue_moved: bool = False,
) -> None:
    """Writes promotions and closings to the record, then notifies after commit.

    Queued people are told only when their places moved (`queue_moved`, or anyone promoted or
    closed); otherwise only the consoles hear of it (their counts changed)."""
    closed = closed or {}
    # Abandoned sessions may have been queued; promotions always move the queue.
    queue_moved = queue_moved or bool(promoted) or "abandoned" in closed.values()
    if not promoted and not closed:
        transaction.on_commit(
            notifications.queue_changed if queue_moved else notifications.console_changed
        )
        return
    now = timezone.now()
    if promoted:
        ChatSession.objects.filter(id__in=list(promoted)).exclude(
            state=ChatSession.State.CLOSED
        ).update(state=ChatSession.State.ACTIVE, activated_at=now)
    for reason in set(closed.values()):
        ids = [sid for sid, r in closed.items() if r == reason]
        fields: dict[str, Any] = {
            "state": ChatSession.State.CLOSED,
            "closed_at": now,
            "close_reason": reason,
        }
        if note:
            fields["close_note"] = note[:300]
        ChatSession.objects.filter(id__in=ids).exclude(state=ChatSession.State.CLOSED).update(
            **fields
        )
    activated = list(promoted)
    transaction.on_commit(
        lambda: notifications.gate_changes(
            activated=activated, closed=closed, note=note, queue_moved=queue_moved
        )
    )


def _closed_map(expired: list[str], abandoned: list[str]) -> dict[str, str]:
    closed = dict.fromkeys(expired, ChatSession.Reason.EXPIRED.value)
    closed.update(dict.fromkeys(abandoned, ChatSession.Reason.ABANDONED.value))
    return closed


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


def session_open(*, user: Any, via: str = "page", client_session_id: str = "") -> OpenOutcome:
    """Opens the person's session or returns their live one (one per person)."""
    manager = get_manager()
    lane = lane_for(user)
    result: OpenResult = manager.open(redis_user_key(user), lane=lane, via=via)
    with transaction.atomic():
        if result.created:
            now = timezone.now()
            # The id is new from Redis, so a plain INSERT (no read first).
            ChatSession.objects.create(
                id=result.session_id,
                user=user,
                state=result.state,
                lane=lane,
                ticket=result.ticket,
                opened_via=via,
                client_session_id=client_session_id[:200],
                created_at=now,
                activated_at=now if result.state == "active" else None,
            )
        else:
            # Normally recorded already; get_or_create covers a record lost (a restored
            # database) and two first opens racing from two tabs or processes.
            ChatSession.objects.get_or_create(
                id=result.session_id,
                defaults={"user": user, "state": result.state, "ticket": result.ticket},
            )
        _record_changes(
            promoted=result.promoted,
            closed=_closed_map(result.expired, result.abandoned),
            # Joining at the back moves nobody; a priority arrival moves those it passes.
            queue_moved=result.created and result.state == "queued" and lane != "normal",
        )
    return OpenOutcome(result.session_id, result.state, result.position, result.created)


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
    result = get_manager().close(str(session_id), reason=reason, only_if_state=only_if_state)
    if result.refused_state:
        return result
    with transaction.atomic():
        closed = _closed_map(result.expired, result.abandoned)
        closed[str(session_id)] = reason
        _record_changes(
            promoted=result.promoted,
            closed=closed,
            note=note,
            queue_moved=result.previous_state == "queued",
        )
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
        closed = {str(session_id): result.state} if result.state in ("expired", "abandoned") else {}
        with transaction.atomic():
            _record_changes(promoted=result.promoted, closed=closed, queue_moved=True)
    return result


def sessions_sweep() -> SweepResult:
    """One sweep: expire idle, drop abandoned, reclaim dead leases, promote."""
    result = get_manager().sweep()
    if result.changed:
        with transaction.atomic():
            _record_changes(
                promoted=result.promoted, closed=_closed_map(result.expired, result.abandoned)
            )
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
    with transaction.atomic():
        if result.outcome == "admitted":
            ChatSession.objects.filter(id=session_id).update(
                state=ChatSession.State.ACTIVE,
                activated_at=timezone.now(),
                admitted_over_limit=result.over_limit,
            )
            transaction.on_commit(lambda: notifications.session_activated(str(session_id)))
        if result.outcome != "not_queued":
            transaction.on_commit(notifications.queue_changed)
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
        with transaction.atomic():
            _record_changes(promoted=promoted)
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
        from sessions_app.admission import default_limits

        return default_limits()


def limits_sync_from_record() -> GateSettings:
    """At start-up (and after a Redis restart): push the recorded limits into Redis."""
    gate = GateSettings.load()
    limits_push(gate)
    return gate


# --- generation slots --------------------------------------------------------------------------


def _slot_timings() -> tuple[float, float]:
    """(query wait limit, lease TTL) in seconds, from one read of the live limits."""
    live = get_manager().config()
    wait = live.get("query_wait_timeout_seconds") or conf.get("QUERY_WAIT_TIMEOUT_SECONDS")
    ttl = live.get("lease_ttl_seconds") or conf.get("LEASE_TTL_SECONDS")
    return float(wait), float(ttl)


@asynccontextmanager
async def generation_slot(
    *,
    session_id: str,
    on_wait: Callable[[int], Awaitable[None]] | None = None,
    timeout: float | None = None,
    poll_interval: float = 0.05,
) -> AsyncIterator[str]:
    """Holds one query slot for the body: waits its turn (FIFO), renews, always releases.

    Raises NotActive if the session is not active, CapacityTimeout after the query wait limit.
    `on_wait(place)` is awaited whenever the query's place among waiting queries changes.
    If the lease cannot be renewed before it runs out (Redis unreachable, or restarted and
    emptied), the slot may already serve someone else: the body is cancelled at once and
    SlotLost is raised, so that never more than the limit generate at the same time.
    """
    manager = get_manager()
    waiter_id = f"{session_id}:{uuid.uuid4().hex[:12]}"
    # Chosen before asking, so that a grant made while this task is being cancelled can still
    # be released by its id (else the slot would be held for a whole lease TTL).
    lease_id = uuid.uuid4().hex
    wait_limit, ttl = await asyncio.to_thread(_slot_timings)
    limit = timeout if timeout is not None else wait_limit
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + limit
    last_place = -1
    try:
        while True:
            result = await asyncio.to_thread(
                manager.acquire_slot, session_id, waiter_id=waiter_id, lease_id=lease_id
            )
            if result.outcome == "granted":
                break
            if result.outcome == "not_active":
                raise NotActive(session_id)
            if on_wait is not None and result.place != last_place:
                last_place = result.place
                await on_wait(result.place)
            if loop.time() >= give_up_at:
                raise CapacityTimeout(session_id)
            await asyncio.sleep(poll_interval)
    except BaseException:
        await asyncio.shield(
            asyncio.to_thread(
                manager.release_slot, session_id, lease_id=lease_id, waiter_id=waiter_id
            )
        )
        raise

    body = asyncio.current_task()
    lost = asyncio.Event()

    async def keep_renewing() -> None:
        expires_at = loop.time() + ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                renewed = await asyncio.to_thread(manager.renew_slot, lease_id)
            except GateUnavailable:
                # A passing Redis fault: try again while the lease has a renewal left in it.
                renewed = None
            if renewed:
                expires_at = loop.time() + ttl
            elif renewed is False or loop.time() + ttl / 3 >= expires_at:
                lost.set()
                if body is not None:
                    body.cancel()  # stop generating: the slot may already serve another
                return

    renewer = asyncio.create_task(keep_renewing())
    try:
        yield lease_id
    except asyncio.CancelledError:
        if lost.is_set() and body is not None:
            body.uncancel()
            raise SlotLost(lease_id) from None
        raise
    finally:
        renewer.cancel()
        # Shielded: a cancelled generation (Stop, disconnect) must still give its slot back.
        await asyncio.shield(asyncio.to_thread(manager.release_slot, session_id, lease_id=lease_id))
    if lost.is_set():
        raise SlotLost(lease_id)


# --- chat messages (the person's conversation within one session) ----------------------------


def _next_sequence(session_id: str) -> int:
    from django.db.models import Max

    from sessions_app.models import ChatMessage

    top = ChatMessage.objects.filter(session_id=uuid.UUID(str(session_id))).aggregate(
        top=Max("sequence")
    )["top"]
    return int(top or 0) + 1


def _message_create(*, session_id: str, role: str, content: str, status: str) -> Any:
    """Appends one message with the next sequence number (retried if two writers race)."""
    from django.db import IntegrityError

    from sessions_app.models import ChatMessage

    for _attempt in range(5):
        try:
            with transaction.atomic():
                return ChatMessage.objects.create(
                    session_id=session_id,
                    sequence=_next_sequence(session_id),
                    role=role,
                    content=content,
                    status=status,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not allocate a message sequence for session {session_id}")


def chat_message_add(*, session_id: str, content: str) -> Any:
    """Records the person's message as waiting for an answer; counts as chat activity.

    Raises NotActive unless the session is active (queued people cannot chat yet).
    """
    touched = session_touch(session_id=session_id, kind="activity")
    if touched.state != "active":
        raise NotActive(session_id)
    from sessions_app.models import ChatMessage

    message = _message_create(
        session_id=session_id,
        role=ChatMessage.Role.USER,
        content=content,
        status=ChatMessage.Status.PENDING,
    )
    metrics.chat_event("chat_messages")
    return message


def chat_question_next(*, session_id: str) -> Any:
    """The oldest unanswered message of the session. Call it only while holding the
    session's generation slot: one lease per session makes the holder the only answerer,
    so messages from two tabs on two processes are answered one at a time, in order."""
    from sessions_app.models import ChatMessage

    return (
        ChatMessage.objects.filter(
            session_id=uuid.UUID(str(session_id)),
            role=ChatMessage.Role.USER,
            status=ChatMessage.Status.PENDING,
        )
        .order_by("sequence")
        .first()
    )


def chat_answer_start(*, session_id: str) -> Any:
    from sessions_app.models import ChatMessage

    return _message_create(
        session_id=session_id,
        role=ChatMessage.Role.ASSISTANT,
        content="",
        status=ChatMessage.Status.PENDING,
    )


def chat_answer_finish(
    *,
    question_id: int,
    answer_id: int | None,
    content: str,
    status: str,
    tokens: int = 0,
    latency_ms: int | None = None,
) -> None:
    """Records how an answer ended: done, cancelled (Stop) or failed; the question with it."""
    from sessions_app.models import ChatMessage

    with transaction.atomic():
        ChatMessage.objects.filter(pk=question_id).update(status=status)
        if answer_id is not None:
            ChatMessage.objects.filter(pk=answer_id).update(
                content=content, status=status, tokens=tokens, latency_ms=latency_ms
            )
    # For /metrics (Redis, so every process reports the same totals); never fails the call.
    event = None
    if status == ChatMessage.Status.FAILED:
        event = "backend_errors" if answer_id is not None else "capacity_timeouts"
    elif status == ChatMessage.Status.CANCELLED:
        event = "cancelled"
    seconds = latency_ms / 1000 if answer_id is not None and latency_ms is not None else None
    if seconds is not None or event is not None:
        metrics.answer_observe(seconds=seconds, event=event)


def chat_question_cancel(*, session_id: str, message_id: int) -> bool:
    """Stop before the answer started: the waiting message will not be answered."""
    from sessions_app.models import ChatMessage

    return bool(
        ChatMessage.objects.filter(
            pk=message_id,
            session_id=uuid.UUID(str(session_id)),
            role=ChatMessage.Role.USER,
            status=ChatMessage.Status.PENDING,
        ).update(status=ChatMessage.Status.CANCELLED)
    )


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


@dataclass(frozen=True)
class ReconcileResult:
    """What disagreed between Redis (live truth) and the SQL record, and what was done."""

    dry_run: bool
    lost: list[str]  # record live, Redis has no session: record closed with reason `lost`
    recorded: list[str]  # Redis session with no record: record created from Redis
    corrected: list[tuple[str, str, str]]  # (id, record state, Redis state): record follows Redis
    dangling: list[str]  # queue/active entry with no session hash: removed from Redis
    orphaned: list[str]  # Redis session of a person unknown to the database: ended (`lost`)
    promoted: list[str]  # queue heads promoted into seats freed by the above
    limits_restored: bool  # Redis had lost the live limits; they were pushed again

    @property
    def changed(self) -> bool:
        return bool(
            self.lost
            or self.recorded
            or self.corrected
            or self.dangling
            or self.orphaned
            or self.limits_restored
        )


def _redis_sessions() -> dict[str, Any]:
    """Every session hash Redis holds, by id (SCAN: never blocks Redis like KEYS would)."""
    from sessions_app.admission import redis_errors

    manager = get_manager()
    start = len(manager.keys.session(""))
    ids: list[str] = []
    with redis_errors():
        for key in manager.client.scan_iter(match=manager.keys.session_pattern(), count=500):
            raw = key.decode() if isinstance(key, bytes) else str(key)
            ids.append(raw[start:])
    infos = manager.session_infos(ids)
    return {sid: info for sid, info in infos.items() if info is not None}


def sessions_reconcile(*, dry_run: bool = False) -> ReconcileResult:
    """Compares Redis with the SQL record and repairs the disagreements (DESIGN.md §2).

    Redis is the live truth: a session the record thinks live but Redis lost is closed with
    reason `lost`; a Redis session with no record gets one; a record whose state differs
    follows Redis. Index entries with no session hash (a key deleted by hand) would hold a
    seat forever, so they are removed, as are sessions of people the database does not know.
    Finally the recorded limits are pushed again if Redis lost them. Run it after a Redis
    restart or data loss; a session that closes while it runs may be recorded as `lost`
    instead of its own reason, so each finding is checked again just before it is repaired.
    """
    from datetime import UTC, datetime

    from django.contrib.auth import get_user_model

    manager = get_manager()
    # Indexes before hashes: a session opened after this read is not in `indexed`, so a
    # just-opened session can never look like a stray index entry.
    indexed = set(manager.queue_order()) | {sid for sid, _ in manager.active_with_activity()}
    live = _redis_sessions()
    records = {
        str(row["id"]): row
        for row in ChatSession.objects.filter(id__in=[uuid.UUID(s) for s in live]).values(
            "id", "state"
        )
    }
    live_records = {
        str(row["id"]): row
        for row in ChatSession.objects.exclude(state=ChatSession.State.CLOSED).values("id", "state")
    }
    user_keys = {info.user for info in live.values()}
    known_users = {
        str(pk)
        for pk in get_user_model()
        .objects.filter(pk__in=[int(k) for k in user_keys if k.isdigit()])
        .values_list("pk", flat=True)
    }

    lost = sorted(sid for sid in live_records if sid not in live)
    dangling = sorted(indexed - set(live))
    orphaned = sorted(sid for sid, info in live.items() if info.user not in known_users)
    recorded = sorted(sid for sid in live if sid not in records and sid not in orphaned)
    corrected = sorted(
        (sid, records[sid]["state"], info.state)
        for sid, info in live.items()
        if sid in records and records[sid]["state"] != info.state
    )
    limits_restored = not manager.config()
    if dry_run:
        return ReconcileResult(
            dry_run=True,
            lost=lost,
            recorded=recorded,
            corrected=corrected,
            dangling=dangling,
            orphaned=orphaned,
            promoted=[],
            limits_restored=limits_restored,
        )

    promoted: list[str] = []
    for sid in dangling:
        if manager.session_info(sid) is None:  # still no hash (it was not mid-open)
            promoted += manager.close(sid, reason=ChatSession.Reason.LOST).promoted
    for sid in orphaned:
        promoted += manager.close(sid, reason=ChatSession.Reason.LOST).promoted
    # Checked again: a session opened or closed since the first look is not ours to repair.
    still_lost = [sid for sid in lost if manager.session_info(sid) is None]
    now = timezone.now()

    def when(seconds: float | None) -> Any:
        return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None

    with transaction.atomic():
        for sid in recorded:
            info = live[sid]
            ChatSession.objects.get_or_create(
                id=sid,
                defaults={
                    "user_id": int(info.user),
                    "state": info.state,
                    "lane": info.lane,
                    "ticket": info.ticket,
                    "opened_via": ChatSession.Via.PAGE if info.paged else ChatSession.Via.API,
                    "admitted_over_limit": info.over_limit,
                    "created_at": when(info.created) or now,
                    "activated_at": when(info.activated),
                },
            )
        for sid, _was, state in corrected:
            info = live[sid]
            ChatSession.objects.filter(id=sid).update(
                state=state,
                activated_at=when(info.activated),
                closed_at=None,
                close_reason="",
            )
        closed = dict.fromkeys(still_lost + dangling + orphaned, ChatSession.Reason.LOST.value)
        _record_changes(promoted=promoted, closed=closed)
    if limits_restored:
        # After a Redis loss the live limits are gone (the admitting scripts refuse until
        # they are back): put the recorded ones back even if nothing above ran a script.
        promoted += limits_push(GateSettings.load())
    if still_lost or recorded or corrected or dangling or orphaned or limits_restored:
        logger.warning(
            "reconcile: %d lost, %d recorded, %d corrected, %d dangling, %d orphaned, "
            "%d promoted, limits %s",
            len(still_lost),
            len(recorded),
            len(corrected),
            len(dangling),
            len(orphaned),
            len(promoted),
            "restored" if limits_restored else "intact",
        )
    return ReconcileResult(
        dry_run=False,
        lost=still_lost,
        recorded=recorded,
        corrected=corrected,
        dangling=dangling,
        orphaned=orphaned,
        promoted=promoted,
        limits_restored=limits_restored,
    )


def api_token_revoke(*, token_id: int, actor: Any) -> bool:
    """Revokes a token at once (its next request is a 401); False if it was already revoked."""
    from sessions_app.models import ApiToken

    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if changed:
            audit(actor=actor, action="token.revoke", target=str(token_id))
    return bool(changed)
