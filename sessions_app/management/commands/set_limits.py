"""Changes the live limits; they take effect at once in every server process."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.gate import services
from sessions_app.gate.admission import GateUnavailable
from sessions_app.management.commands._common import operator_label

OPTIONS = {
    "max_active": "max_active_sessions",
    "max_concurrent": "max_concurrent_queries",
    "idle_timeout": "idle_timeout_seconds",
    "grace": "disconnect_grace_seconds",
    "query_wait": "query_wait_timeout_seconds",
}


class Command(BaseCommand):
    help = "Change max active sessions, max generating queries, timeouts; pause or resume."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-active", type=int, help="Most active chat sessions at once.")
        parser.add_argument("--max-concurrent", type=int, help="Most generating queries at once.")
        parser.add_argument("--idle-timeout", type=int, help="Seconds of no chat before expiry.")
        parser.add_argument("--grace", type=int, help="Seconds with no page open before release.")
        parser.add_argument("--query-wait", type=int, help="Seconds a query may wait for a slot.")
        parser.add_argument("--banner", help="A notice shown to everyone waiting ('' clears it).")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--pause", action="store_true", help="Stop admitting (drain).")
        group.add_argument("--resume", action="store_true", help="Admit again.")

    def handle(self, *args: Any, **options: Any) -> None:
        changes: dict[str, Any] = {
            field: options[opt] for opt, field in OPTIONS.items() if options[opt] is not None
        }
        if options["banner"] is not None:
            changes["banner_message"] = options["banner"]
        if options["pause"]:
            changes["admissions_paused"] = True
        if options["resume"]:
            changes["admissions_paused"] = False
        if not changes:
            raise CommandError("Nothing to change: give at least one option (see --help).")
        try:
            gate = services.limits_set(actor=operator_label("set_limits"), **changes)
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                messages = "; ".join(
                    f"{name}: {' '.join(errs)}" for name, errs in exc.message_dict.items()
                )
            else:
                messages = " ".join(exc.messages)
            raise CommandError(f"Limits not changed: {messages}") from exc
        except GateUnavailable as exc:
            # The record was saved before the push to Redis failed.
            raise CommandError(
                f"{exc} The new limits are saved in the database but not yet live; they are "
                "pushed when Redis is back (the sweeper does it on reconnect), or run "
                "set_limits again then."
            ) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Limits now: max active {gate.max_active_sessions}, "
                f"max generating {gate.max_concurrent_queries}, "
                f"idle timeout {gate.idle_timeout_seconds}s, grace "
                f"{gate.disconnect_grace_seconds}s, query wait "
                f"{gate.query_wait_timeout_seconds}s, "
                f"admissions {'paused' if gate.admissions_paused else 'open'}"
                + (f", banner {gate.banner_message!r}." if gate.banner_message else ".")
            )
        )
