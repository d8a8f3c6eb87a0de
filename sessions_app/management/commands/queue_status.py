"""Prints the gate's state: counts, limits, active sessions and the queue."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app import selectors
from sessions_app.admission import GateUnavailable


class Command(BaseCommand):
    help = "Show active sessions, the queue with positions, query slots and limits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        parser.add_argument("--limit", type=int, default=50, help="Queue rows to show.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            snapshot = selectors.gate_snapshot()
            active = selectors.active_entries()
            queue = selectors.queue_entries(options["limit"])
        except GateUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "gate": snapshot.as_dict(),
                        "active": [e.__dict__ for e in active],
                        "queue": [e.__dict__ for e in queue],
                    },
                    indent=2,
                    default=str,
                )
            )
            return
        paused = " (admissions PAUSED)" if snapshot.admissions_paused else ""
        self.stdout.write(
            f"active {snapshot.active}/{snapshot.max_active_sessions}  "
            f"queued {snapshot.queued}  "
            f"generating {snapshot.in_flight}/{snapshot.max_concurrent_queries}  "
            f"queries waiting {snapshot.waiting_queries}{paused}"
        )
        for entry in active:
            self.stdout.write(
                f"  active  {entry.username:<20} idle {entry.idle_for:6.0f}s  {entry.session_id}"
            )
        for queued in queue:
            eta = f"~{queued.eta_seconds}s" if queued.eta_seconds else ""
            self.stdout.write(
                f"  #{queued.position:<5} {queued.username:<20} {queued.lane:<8} {eta:>8}  "
                f"{queued.session_id}"
            )
