"""Every push to a WebSocket goes through here: group names, event types, and the sending.

Pushes are at-most-once (channels-redis drops on a full channel), so every queue frame a
consumer sends is absolute; a lost push is healed by the next one. Sending never fails the
caller: the state change already happened, and a missed notice is repaired by the next frame
or by the page's own resync.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# One group per process fan-out registry: a queue change costs one message per process.
QUEUE_GROUP = "gate.queue"
# Staff consoles; each console consumer coalesces updates itself.
CONSOLE_GROUP = "gate.console"


def session_group(session_id: str) -> str:
    """All sockets of one person's session (two tabs, two server processes)."""
    return f"gate.session.{session_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the change is done; a lost notice is healed by the next frame
        logger.warning("could not notify %s of %s", group, message.get("type"), exc_info=True)


def session_activated(session_id: str) -> None:
    _send(session_group(session_id), {"type": "session.activated", "session_id": session_id})


def session_closed(session_id: str, reason: str, note: str = "") -> None:
    _send(
        session_group(session_id),
        {"type": "session.closed", "session_id": session_id, "reason": reason, "note": note},
    )


def queue_changed() -> None:
    """The queue moved (someone joined, left or was promoted): each process re-reads it once."""
    _send(QUEUE_GROUP, {"type": "queue.changed"})
    console_changed()


def console_changed() -> None:
    _send(CONSOLE_GROUP, {"type": "console.changed"})


def banner_changed(message: str) -> None:
    _send(QUEUE_GROUP, {"type": "banner.changed", "message": message})


def gate_changes(*, activated: list[str], closed: dict[str, str], note: str = "") -> None:
    """One batch of transitions: tell each person concerned, then every process once."""
    for session_id in activated:
        session_activated(session_id)
    for session_id, reason in closed.items():
        session_closed(session_id, reason, note)
    queue_changed()
