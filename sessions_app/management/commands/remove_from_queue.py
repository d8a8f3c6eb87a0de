"""Takes a queued person out of the line (their place is freed; active sessions are refused)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.gate import selectors, services
from sessions_app.management.commands._common import (
    add_session_arguments,
    gate_errors,
    operator_label,
)


class Command(BaseCommand):
    help = (
        "Remove a queued person from the queue, by username or session id. An active session "
        "is refused: use close_session for that."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_session_arguments(parser, reason=True)

    def handle(self, *args: Any, **options: Any) -> None:
        with gate_errors():
            ref = selectors.session_ref_resolve(options["ref"])
            try:
                services.session_remove_from_queue(
                    session_id=ref.session_id,
                    actor=operator_label("remove_from_queue"),
                    note=options["reason"],
                )
            except services.NotQueued as exc:
                raise CommandError(
                    f"{ref.username}'s session is {exc.state}, not queued; "
                    "use `manage.py close_session` to end an active session."
                ) from exc
        self.stdout.write(self.style.SUCCESS(f"Removed {ref.username} from the queue."))
