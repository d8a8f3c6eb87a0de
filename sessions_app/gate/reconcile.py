"""Reconcile: compare Redis (the live truth) with the SQL record after a restart or data loss.

The sweeper runs it by itself (`reconcile_if_redis_changed`, issue 11): it notices a Redis
restart, a failover to another server or a data loss by a marker that only a completed
reconcile writes (the server's run id), and repairs within one sweep interval. The
`reconcile_sessions` command stays for operators.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app.gate import journal
from sessions_app.gate.admission import get_manager
from sessions_app.gate.services import limits_push, record_lost
from sessions_app.models import ChatSession, GateSettings

logger = logging.getLogger(__name__)


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
    from sessions_app.gate.admission import redis_errors

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
    # The record first catches up with what Redis journalled, or every change still on its way
    # would look like a disagreement.
    journal.flush()
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
    # The same for the other findings: the sweeper reconciles after a failover while people
    # come and go, and a seat closed since the first look must not be recorded live again.
    recorded = [sid for sid in recorded if manager.session_info(sid) is not None]
    corrected = [
        (sid, was, state)
        for sid, was, state in corrected
        if (info_now := manager.session_info(sid)) is not None and info_now.state == state
    ]
    now = timezone.now()
    # Again: sessions opened since the first look have rows on their way in the journal, with
    # what their callers sent; a row made up here from Redis would lack their reference.
    journal.flush()

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
        for sid, was, state in corrected:
            info = live[sid]
            # Only a record still as we read it: a close (or a promotion) written since then
            # by the service that made it is newer than our look at Redis.
            ChatSession.objects.filter(id=sid, state=was).update(
                state=state,
                activated_at=when(info.activated),
                closed_at=None,
                close_reason="",
            )
    # Orphans' closes and the promotions were journalled by their scripts; rows Redis has
    # nothing of are closed here.
    journal.after_transition()
    record_lost(still_lost + dangling)
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


def redis_changed() -> str:
    """Why the record may disagree with Redis since the last reconcile ("" when it cannot).

    The marker holds the run id of the server the last reconcile ran against. A restart or a
    failover changes the run id; a data loss (FLUSHALL, a restart without persistence, a
    replica promoted before it had the data) loses the marker. The limits alone would not do:
    the first transition after a loss puts them back, perhaps before the sweeper looks."""
    from sessions_app.gate.admission import redis_errors

    manager = get_manager()
    with redis_errors():
        pipe = manager.client.pipeline(transaction=False)
        pipe.info("server")
        pipe.get(manager.keys.reconciled)
        info, marker = pipe.execute()
    run_id = str(info.get("run_id", ""))
    if marker is None:
        return "no reconcile recorded on this Redis (first start, or its data was lost)"
    marker = marker.decode() if isinstance(marker, bytes) else str(marker)
    if marker != run_id:
        return "another Redis server (restarted, or a failover)"
    return ""


def _mark_reconciled(run_id: str) -> None:
    from sessions_app.gate.admission import redis_errors

    manager = get_manager()
    with redis_errors():
        manager.client.set(manager.keys.reconciled, run_id)


def reconcile_if_redis_changed() -> ReconcileResult | None:
    """The sweeper's repair: reconciles when Redis changed under us, else does nothing.

    The run id is read before reconciling and marked after it, so a restart during the
    reconcile is noticed again on the next sweep."""
    reason = redis_changed()
    if not reason:
        return None
    from sessions_app.gate.admission import redis_errors

    with redis_errors():
        run_id = str(get_manager().client.info("server").get("run_id", ""))
    logger.warning("reconcile: %s; comparing Redis with the record", reason)
    result = sessions_reconcile()
    _mark_reconciled(run_id)
    return result
