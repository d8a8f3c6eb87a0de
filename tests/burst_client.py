"""A small raw HTTP/1.1 client for bursts: thousands of requests at once from one event loop.

httpx or requests would spend more CPU per request than the servers under test on this 2-core
box; a burst test must load the servers, not itself. One connection per request
(`Connection: close`), as thousands of separate clients would.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    elapsed: float


async def request(
    port: int,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Answer:
    loop = asyncio.get_running_loop()
    started = loop.time()
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    data = await asyncio.wait_for(exchange(), timeout)
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        parsed = json.loads(rest) if rest else {}
    except ValueError:
        parsed = {"raw": rest[:500].decode(errors="replace")}
    return Answer(status, parsed, loop.time() - started)
