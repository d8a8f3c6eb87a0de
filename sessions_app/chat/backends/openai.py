"""`openai`: any OpenAI-compatible streaming `/v1/chat/completions` (vLLM, Ollama, TGI, LiteLLM).

Speaks server-sent events: each `data:` line holds a chunk whose `choices[0].delta.content` is
the next piece; `data: [DONE]` ends the stream. Every failure (connection, HTTP status, a
malformed line) becomes BackendError with a message fit to show the person.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx

from sessions_app.chat.backends.base import BackendError, ChatBackend, ChatTurn, StreamEnd

# One HTTP client per event loop, shared by every answer on it: building one costs ~25 ms (the
# CA bundle is read on the event loop) and its connection pool keeps the model server's
# connection open between answers. An httpx.AsyncClient's connections belong to the loop that
# opened them, so a client is never shared across loops (tests and threads run their own).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


# How long the rest of a body after [DONE] is waited for (`_read_to_the_end`), with the slot
# still held: the end follows at once, or after one delayed ACK (40 ms) from a server that
# leaves Nagle's algorithm on; a server that holds the body open costs no more than this.
DRAIN_SECONDS = 0.1


def shared_client() -> httpx.AsyncClient:
    """The running loop's HTTP client, built on first use (timeouts are set per request)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        # Enough connections for every generation slot of this process at once (the gate's
        # limit is 10 across processes), so answers never queue for a pooled connection.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        client = httpx.AsyncClient(limits=limits)
        _clients[loop] = client
    return client


class OpenAIBackend(ChatBackend):
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        # Read timeout bounds the gap between two chunks, not the whole answer.
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def stream(self, turns: list[ChatTurn], end: StreamEnd) -> AsyncIterator[str]:
        body = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [_message(t) for t in turns],
        }
        chunks = 0
        try:
            async with shared_client().stream(
                "POST", self.url, json=body, headers=self._headers(), timeout=self.timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise BackendError(f"The model server answered HTTP {response.status_code}.")
                lines = response.aiter_lines()
                async for line in lines:
                    piece, usage, done = _parse_line(line)
                    if usage is not None:
                        end.tokens = usage
                    if piece:
                        chunks += 1
                        if usage is None and end.tokens < chunks:
                            end.tokens = chunks
                        yield piece
                    if done:
                        await _read_to_the_end(lines)
                        return
        except httpx.TimeoutException as exc:
            raise BackendError("The model server did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise BackendError("The model server could not be reached.") from exc


async def _read_to_the_end(lines: AsyncIterator[str]) -> None:
    """Reads what follows `data: [DONE]`: the end of the chunked body, normally at once.

    Closed before its end, a response takes its connection with it (httpcore reuses only a
    connection whose exchange is complete): every answer opened a new connection to the model
    server, 27 of 30 in a row on the P6 benchmark's. A server that keeps the body open after
    [DONE] gets DRAIN_SECONDS, then its connection is closed as before.
    """
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in lines:
                pass


def _message(turn: ChatTurn) -> dict[str, Any]:
    """A turn as the API wants it: plain text, or (with images) a list of content parts."""
    if not turn.images:
        return {"role": turn.role, "content": turn.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.content}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in turn.images]
    return {"role": turn.role, "content": parts}


def _parse_line(line: str) -> tuple[str, int | None, bool]:
    """(content piece, total tokens if reported, stream finished) for one SSE line."""
    line = line.strip()
    if not line or line.startswith(":") or not line.startswith("data:"):
        return "", None, False
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return "", None, True
    try:
        payload: Any = json.loads(data)
    except json.JSONDecodeError as exc:
        raise BackendError("The model server sent a malformed reply.") from exc
    if isinstance(payload, dict) and "error" in payload:
        raise BackendError("The model server reported an error.")
    usage = None
    if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
        total = payload["usage"].get("completion_tokens")
        usage = int(total) if isinstance(total, int) else None
    piece = ""
    try:
        choices = payload.get("choices") or []
        if choices:
            delta = choices[0].get("delta") or {}
            piece = delta.get("content") or ""
    except AttributeError as exc:
        raise BackendError("The model server sent a malformed reply.") from exc
    return str(piece), usage, False
