"""`openai`: any OpenAI-compatible streaming `/v1/chat/completions` (vLLM, Ollama, TGI, LiteLLM).

Speaks server-sent events: each `data:` line holds a chunk whose `choices[0].delta.content` is
the next piece; `data: [DONE]` ends the stream. Every failure (connection, HTTP status, a
malformed line) becomes BackendError with a message fit to show the person.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from sessions_app.chat.backends.base import BackendError, ChatBackend, ChatTurn, StreamEnd


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
            async with (
                httpx.AsyncClient(timeout=self.timeout) as client,
                client.stream("POST", self.url, json=body, headers=self._headers()) as response,
            ):
                if response.status_code >= 400:
                    await response.aread()
                    raise BackendError(f"The model server answered HTTP {response.status_code}.")
                async for line in response.aiter_lines():
                    piece, usage, done = _parse_line(line)
                    if usage is not None:
                        end.tokens = usage
                    if piece:
                        chunks += 1
                        if usage is None and end.tokens < chunks:
                            end.tokens = chunks
                        yield piece
                    if done:
                        return
        except httpx.TimeoutException as exc:
            raise BackendError("The model server did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise BackendError("The model server could not be reached.") from exc


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
