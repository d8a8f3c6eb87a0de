"""`echo`: an offline backend that streams a deterministic reply, for demos and tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from sessions_app.chat.backends.base import ChatBackend, ChatTurn, StreamEnd


def echo_reply(content: str) -> list[str]:
    """The reply's tokens: the same input always gives the same tokens. Each word carries the
    whitespace before it, as written, so multi-line Markdown (lists, tables, code fences)
    comes back exactly as it was asked and the page's rendering can be tested live."""
    words = re.findall(r"\s*\S+", content.strip()) or ["(empty)"]
    return ["Echo:", f" {words[0]}", *words[1:]]


class EchoBackend(ChatBackend):
    name = "echo"

    def __init__(self, token_delay: float = 0.05) -> None:
        # The delay stands in for a GPU's per-token time, so slots are held as in production.
        self.token_delay = max(0.0, token_delay)

    async def stream(self, turns: list[ChatTurn], end: StreamEnd) -> AsyncIterator[str]:
        last = turns[-1].content if turns else ""
        for index, token in enumerate(echo_reply(last)):
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            end.tokens = index + 1
            yield token
