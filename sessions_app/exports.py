"""CSV exports of the durable record: seats (sessions) and the audit log, for a time range.

One writer per record, used by the admin's export action (the selected or filtered rows) and by
`manage.py export_records` (a time range), so both produce the same columns. Rows are streamed
with `iterator()`, so a month of sessions never sits in memory. Times are ISO 8601 in UTC.
Cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) are prefixed with
a quote: usernames and notes come from people (CWE-1236).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from django.db.models import QuerySet

from sessions_app.models import AuditEvent, ChatSession


class Writable(Protocol):
    """Anything with write(str): a file, a command's stdout, an HttpResponse."""

    def write(self, text: str, /) -> Any: ...


SESSION_COLUMNS = (
    "id",
    "username",
    "state",
    "lane",
    "opened_via",
    "created_at",
    "activated_at",
    "closed_at",
    "close_reason",
    "close_note",
    "admitted_over_limit",
    "waited_seconds",
)
AUDIT_COLUMNS = ("id", "created_at", "actor", "action", "target", "detail")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _write(out: Writable, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> int:
    writer = csv.writer(out)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        count += 1
    return count


def sessions_in_range(start: datetime | None, end: datetime | None) -> QuerySet[ChatSession]:
    """Sessions opened in [start, end)."""
    queryset = ChatSession.objects.all()
    if start is not None:
        queryset = queryset.filter(created_at__gte=start)
    if end is not None:
        queryset = queryset.filter(created_at__lt=end)
    return queryset.order_by("created_at")


def audit_in_range(start: datetime | None, end: datetime | None) -> QuerySet[AuditEvent]:
    """Audit events written in [start, end)."""
    queryset = AuditEvent.objects.all()
    if start is not None:
        queryset = queryset.filter(created_at__gte=start)
    if end is not None:
        queryset = queryset.filter(created_at__lt=end)
    return queryset.order_by("created_at")


def sessions_csv(queryset: QuerySet[ChatSession], out: Writable) -> int:
    """Writes the sessions as CSV; returns how many rows."""

    def rows() -> Iterable[list[Any]]:
        for s in queryset.select_related("user").iterator(chunk_size=2000):
            waited = (
                round((s.activated_at - s.created_at).total_seconds(), 1)
                if s.activated_at
                else None
            )
            yield [
                s.pk,
                s.user.get_username(),
                s.state,
                s.lane,
                s.opened_via,
                s.created_at,
                s.activated_at,
                s.closed_at,
                s.close_reason,
                s.close_note,
                int(s.admitted_over_limit),
                waited,
            ]

    return _write(out, SESSION_COLUMNS, rows())


def audit_csv(queryset: QuerySet[AuditEvent], out: Writable) -> int:
    """Writes the audit events as CSV (detail as compact JSON); returns how many rows."""

    def rows() -> Iterable[list[Any]]:
        for e in queryset.iterator(chunk_size=2000):
            detail = json.dumps(e.detail or {}, ensure_ascii=False, sort_keys=True)
            yield [e.pk, e.created_at, e.actor_label, e.action, e.target, detail]

    return _write(out, AUDIT_COLUMNS, rows())
