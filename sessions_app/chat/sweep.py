"""Ends answers nobody is writing any more (issue 8 item 8): a question and its answer never
stay `pending` or `streaming` for good.

A live answerer always holds its seat's generation lease (streaming) or waits in the slot line
(pending), and records how its answer ended before it lets go of the lease. So an answer older
than a lease TTL whose seat is closed, or whose seat holds no live lease and waits for no slot,
has nobody behind it: its process died (killed, OOM), or its page closed before the answer
started and nobody reopened one. The sweep collects those first, then ends them as `failed`
(the page offers retry) and tells the person's pages, and logs how many it ended.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from sessions_app import conf, notifications
from sessions_app.gate.admission import get_manager, redis_errors
from sessions_app.models import ChatMessage, ChatSession

logger = logging.getLogger(__name__)

ANSWERING = (ChatMessage.Status.PENDING, ChatMessage.Status.STREAMING)
# Bounded so one sweep stays cheap after a crash left many rows behind; the next takes the rest.
BATCH = 500


def _seats_with_an_answerer(seat_ids: set[str]) -> set[str]:
    """Seats that hold an unexpired generation lease or a live place in the slot line now.
    Read by deadline, not membership: a dead process's lease stays listed until reclaimed."""
    manager = get_manager()
    now = manager.server_time()
    with redis_errors():
        leases = manager.client.zrangebyscore(manager.keys.slots, now, "+inf")
        waiters = manager.client.zrangebyscore(manager.keys.slot_waiters, now, "+inf")
    live_leases = {_text(lease) for lease in leases}
    infos = manager.session_infos(sorted(seat_ids))
    busy = {sid for sid, info in infos.items() if info is not None and info.lease in live_leases}
    busy.update(_text(waiter).split(":", 1)[0] for waiter in waiters)  # "<seat id>:<n>"
    return busy & seat_ids


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def messages_sweep(*, older_than_seconds: float | None = None) -> int:
    """Ends orphaned answers (and their questions) as failed; returns how many answers."""
    ttl = older_than_seconds
    if ttl is None:
        live = get_manager().config().get("lease_ttl_seconds")
        ttl = float(live or conf.get("LEASE_TTL_SECONDS"))
    cutoff = timezone.now() - timedelta(seconds=ttl)
    rows = list(
        ChatMessage.objects.filter(
            sender_type=ChatMessage.Role.ASSISTANT, status__in=ANSWERING, created_at__lt=cutoff
        )
        .order_by("pk")
        .values_list("pk", "seat_id", "conversation_id", "conversation__owner_id")[:BATCH]
    )
    if not rows:
        return 0
    seat_ids = {str(seat) for _, seat, _, _ in rows if seat is not None}
    live_seats = {
        str(s)
        for s in ChatSession.objects.filter(id__in=[uuid.UUID(x) for x in seat_ids])
        .exclude(state=ChatSession.State.CLOSED)
        .values_list("id", flat=True)
    }
    answered = _seats_with_an_answerer(live_seats) if live_seats else set()
    orphans = [row for row in rows if row[1] is None or str(row[1]) not in answered]
    if not orphans:
        return 0
    ids = [pk for pk, _, _, _ in orphans]
    with transaction.atomic():
        ended = list(
            ChatMessage.objects.select_for_update()
            .filter(pk__in=ids, status__in=ANSWERING)
            .values_list("pk", "parent_id")
        )
        ended_ids = [pk for pk, _ in ended]
        ChatMessage.objects.filter(pk__in=ended_ids).update(status=ChatMessage.Status.FAILED)
        ChatMessage.objects.filter(
            pk__in=[parent for _, parent in ended if parent is not None], status__in=ANSWERING
        ).update(status=ChatMessage.Status.FAILED)
    owners = {pk: (conv, owner) for pk, _, conv, owner in orphans}
    for pk in ended_ids:
        conversation_id, owner_id = owners[pk]
        notifications.chat_frame(
            owner_id,
            {
                "type": "stream_end",
                "message_id": pk,
                "conversation_id": str(conversation_id),
                "tokens_used": 0,
                "latency_ms": 0,
                "status": "failed",
            },
        )
    if ended_ids:
        logger.info("message sweep: %d orphaned answers ended as failed", len(ended_ids))
    return len(ended_ids)
