"""The contract every chat backend follows: stream the answer to a conversation, token by token.

A backend knows nothing of sessions, slots or sockets: the consumer holds the generation slot
around `stream()` and cancels the iteration to stop it (Stop, disconnect, timeout).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


class BackendError(Exception):
    """The backend could not answer (unreachable, refused, malformed reply). Shown as
    BACKEND_ERROR; the message is safe to show a person (no keys, no internal addresses)."""


@dataclass(frozen=True)
class ChatTurn:
    """One message of the conversation sent as context: role is "user" or "assistant".
    `images` are data URLs of the images attached to it, for backends whose model reads them."""

    role: str
    content: str
    images: tuple[str, ...] = ()


@dataclass
class StreamEnd:
    """Filled in by the backend while it streams: what to record once the stream ends."""

    tokens: int = 0  # tokens the backend reports (usage), else the number of chunks streamed


class ChatBackend:
    """Base class for chat backends.

    Methods that child classes must implement: `stream`. `aclose` is optional.
    """

    name = "base"

    def stream(self, turns: list[ChatTurn], end: StreamEnd) -> AsyncIterator[str]:
        """Yields the answer to the last turn of `turns` in pieces, as they are produced.

        `turns` holds the recent history, oldest first, ending with the person's message.
        Sets `end.tokens` before finishing. Raises BackendError when it cannot answer; must be
        safe to cancel at any await (the consumer cancels it when the person presses Stop).
        """
        raise NotImplementedError("subclasses of ChatBackend must provide a stream() method")

    async def aclose(self) -> None:
        """Releases connections the backend keeps between calls (nothing by default)."""
