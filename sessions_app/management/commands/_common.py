"""Small helpers the operator commands share (not a command: the name starts with `_`)."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError, CommandParser

from sessions_app.gate.admission import GateUnavailable
from sessions_app.gate.selectors import SessionNotFound


def operator_label(command: str) -> str:
    """Who the audit log names for a command: the shell user and host, and the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} (manage.py {command})"[:150]


@contextmanager
def gate_errors() -> Iterator[None]:
    """Turns the gate's expected failures into CommandErrors a person can act on."""
    try:
        yield
    except GateUnavailable as exc:
        raise CommandError(
            f"{exc} Check that Redis is running and REDIS_URL (or REDIS_SENTINELS) points at "
            "it, then try again."
        ) from exc
    except SessionNotFound as exc:
        raise CommandError(f"{exc} See `manage.py queue_status` for who is live.") from exc


def add_session_arguments(parser: CommandParser, *, reason: bool) -> None:
    """`USER|SESSION_ID` (and `--reason`), shared by the commands that act on one session."""
    parser.add_argument("ref", metavar="USER|SESSION_ID", help="Username or session id.")
    if reason:
        parser.add_argument(
            "--reason", default="", help="A note shown to the person and kept in the audit log."
        )
