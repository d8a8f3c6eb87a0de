"""Force-closes one live session (active or queued) as staff would from the console."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions_app.gate import selectors, services
from sessions_app.management.commands._common import (
    add_session_arguments,
    gate_errors,
    operator_label,
)
from sessions_app.models import ChatSession


class Command(BaseCommand):
    help = (
        "Close a live session, by its person's username or its session id. The person is told "
        "it was closed by staff (with --reason, if given) and the queue head takes the seat."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_session_arguments(parser, reason=True)

    def handle(self, *args: Any, **options: Any) -> None:
        with gate_errors():
            ref = selectors.session_ref_resolve(options["ref"])
            result = services.session_close(
                session_id=ref.session_id,
                reason=ChatSession.Reason.ADMIN,
                actor=operator_label("close_session"),
                note=options["reason"],
            )
        if not result.closed:
            self.stdout.write(
                self.style.WARNING(f"{ref.username}'s session {ref.session_id} had already ended.")
            )
            return
        promoted = f"; promoted {len(result.promoted)} from the queue" if result.promoted else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Closed {ref.username}'s {result.previous_state} session {ref.session_id}"
                f"{promoted}."
            )
        )
