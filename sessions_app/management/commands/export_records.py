"""Exports sessions or the audit log for a time range as CSV (to a file or stdout)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from sessions_app import exports


def _moment(text: str | None) -> datetime | None:
    """ISO date or date-time; a bare date means its midnight (local time zone)."""
    if not text:
        return None
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"Not a date or date-time: {text!r} (use 2026-11-30 or ISO 8601).")
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


class Command(BaseCommand):
    help = "Write sessions or the audit log of a time range as CSV ([--since, --until))."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("what", choices=["sessions", "audit"])
        parser.add_argument("--since", help="Start (inclusive): 2026-11-01 or an ISO date-time.")
        parser.add_argument("--until", help="End (exclusive): 2026-12-01 or an ISO date-time.")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")

    def handle(self, *args: Any, **options: Any) -> None:
        start = _moment(options["since"])
        end = _moment(options["until"])
        if start and end and start >= end:
            raise CommandError("--since must be before --until.")
        path = options["output"]
        if not path:
            count = self._write(options["what"], start, end, self.stdout)
            self.stderr.write(f"{count} row(s).")
            return
        try:
            with open(path, "w", newline="", encoding="utf-8") as out:
                count = self._write(options["what"], start, end, out)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"{count} row(s) written to {path}."))

    def _write(self, what: str, start: datetime | None, end: datetime | None, out: Any) -> int:
        if what == "sessions":
            return exports.sessions_csv(exports.sessions_in_range(start, end), out)
        return exports.audit_csv(exports.audit_in_range(start, end), out)
