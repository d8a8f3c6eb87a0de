"""Staff promotion of a queued person: admit now (even above the limit) or move to the front."""

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
        "Admit a queued person now, even above the active limit (labelled as such), or with "
        "--front move them to the head of the queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_session_arguments(parser, reason=False)
        parser.add_argument(
            "--front",
            action="store_true",
            help="Move to the head of the queue instead of admitting now.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        how = "front" if options["front"] else "admit"
        with gate_errors():
            ref = selectors.session_ref_resolve(options["ref"])
            result = services.session_promote(
                session_id=ref.session_id, how=how, actor=operator_label("promote")
            )
        if result.outcome == "not_queued":
            raise CommandError(
                f"{ref.username}'s session {ref.session_id} is {ref.state}, not queued: "
                "only queued people can be promoted."
            )
        if result.outcome == "front":
            self.stdout.write(
                self.style.SUCCESS(f"Moved {ref.username} to the front of the queue.")
            )
            return
        over = " (above the active limit)" if result.over_limit else ""
        self.stdout.write(self.style.SUCCESS(f"Admitted {ref.username} now{over}."))
