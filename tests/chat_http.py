"""Helpers for the HTTP-chat tests: people with tokens and cookies, a raw SSE client over a
plain TCP socket (so a test can close it mid-stream, as a real client going away does)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

from sessions_app.chat import conversations
from sessions_app.models import ApiToken
from tests.live import DaphneServer


@dataclass
class Person:
    user: Any
    token: str
    conversation_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def person(name: str, *, can_act_for_users: bool = False) -> Person:
    """A user with an API token of their own and one empty conversation."""
    user = get_user_model().objects.create_user(username=name)
    _row, raw = ApiToken.issue(
        name=f"{name}-token", owner=user, can_act_for_users=can_act_for_users
    )
    conversation = conversations.conversation_create(owner=user, title="", announce=False)
    return Person(user=user, token=raw, conversation_id=str(conversation.pk))


def login_cookie_for(user: Any) -> str:
    """A real Django session for `user`, as the login form would create it."""
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"sessionid={store.session_key}"


@dataclass
class SseStream:
    """An SSE response read over a raw socket: status, headers, then events one by one."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    _buffer: str = ""

    async def _chunk(self) -> str:
        size_line = await self.reader.readline()
        if not size_line:
            raise EOFError("the server closed the stream")
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            raise EOFError("the stream ended")
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)  # CRLF after each chunk
        return data.decode()

    async def event(self, timeout: float = 20) -> dict[str, Any]:
        """The next event's data (keep-alive comments skipped); EOFError when it ends."""
        async with asyncio.timeout(timeout):
            while True:
                while "\n\n" not in self._buffer:
                    self._buffer += await self._chunk()
                block, self._buffer = self._buffer.split("\n\n", 1)
                data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
                if data:
                    parsed: dict[str, Any] = json.loads("\n".join(data))
                    names = [line[7:] for line in block.splitlines() if line.startswith("event: ")]
                    assert names == [parsed["type"]], block
                    return parsed

    async def until(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        while True:
            event = await self.event(timeout)
            if event["type"] == kind:
                return event

    async def body(self) -> dict[str, Any]:
        """A non-stream answer's JSON body (errors answer before any stream starts)."""
        length = int(self.headers.get("content-length", "0"))
        if length:
            return json.loads(await self.reader.readexactly(length))
        text = ""
        try:
            while True:
                text += await self._chunk()
        except EOFError:
            pass
        return json.loads(text)

    def close(self) -> None:
        """Closes the TCP connection at once, as a client that goes away does."""
        self.writer.close()


async def open_sse(
    server: DaphneServer,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> SseStream:
    url = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {url.hostname}:{url.port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    await writer.drain()
    stream = SseStream(reader, writer)
    async with asyncio.timeout(20):
        status_line = await reader.readline()
        stream.status = int(status_line.split()[1])
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            stream.headers[name.strip().lower()] = value.strip()
    return stream
