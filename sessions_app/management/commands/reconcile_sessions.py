"""Repairs disagreements between Redis (live truth) and the SQL record, e.g. after a Redis loss."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions_app.gate import reconcile
from sessions_app.management.commands._common import gate_errors


class Command(BaseCommand):
    help = (
        "Compare Redis with the session record and repair: sessions the record thinks live but "
        "Redis lost are closed (reason 'lost'); Redis sessions with no record get one; stray "
        "queue/active entries are removed; lost limits are restored. --dry-run only reports."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what disagrees; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with gate_errors():
            result = reconcile.sessions_reconcile(dry_run=options["dry_run"])
        verb = "would" if result.dry_run else "did"
        rows = [
            ("closed as lost (record live, Redis lost)", result.lost),
            ("recorded (in Redis, no record)", result.recorded),
            ("corrected (record state followed Redis)", [c[0] for c in result.corrected]),
            ("removed stray queue/active entries", result.dangling),
            ("ended (person unknown to the database)", result.orphaned),
        ]
        if not result.changed:
            self.stdout.write(self.style.SUCCESS("Redis and the record agree; nothing to do."))
            return
        self.stdout.write(f"Reconcile ({'dry run' if result.dry_run else 'applied'}):")
        for label, ids in rows:
            self.stdout.write(f"  {len(ids):>5}  {label}")
            for sid in ids[:20]:
                self.stdout.write(f"           {sid}")
            if len(ids) > 20:
                self.stdout.write(f"           ... and {len(ids) - 20} more")
        for sid, was, now in result.corrected[:20]:
            self.stdout.write(f"           {sid}: {was} -> {now}")
        if result.limits_restored:
            self.stdout.write(f"  Redis had no live limits: {verb} push the recorded ones.")
        if result.promoted:
            self.stdout.write(f"  promoted {len(result.promoted)} from the queue")
        style = self.style.WARNING if result.dry_run else self.style.SUCCESS
        self.stdout.write(style("Nothing changed (dry run)." if result.dry_run else "Repaired."))
