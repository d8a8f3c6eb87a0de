"""A lean WebSocket client for the page benchmarks, as wrk is for HTTP: one asyncio Protocol per
page, no library between the socket and the frames.

Why: with 10,000 pages on 2 shared cores, the `websockets` library's per-frame work (its frame
parser, a task hand-off per message, UTF-8 validation, its keepalive machinery) ran on the same
cores as the daphnes it measured, so the measuring side was a large share of the CPU of a
round. This client does only what a waiting page must:

* the HTTP/1.1 upgrade with the person's session cookie and the Origin (the consumer refuses
  anonymous and cross-origin sockets), checked for `101`;
* reading the server's frames (unmasked, RFC 6455 §5.1), reassembling fragments;
* answering every ping with a masked pong carrying its payload (daphne pings every 20 s and
  drops a socket that does not answer in 30 s);
* nothing else is needed for presence: an open `/ws/chat/` socket *is* the person's presence
  (the registry renews it for every socket it holds), so a waiting page sends no frame.

Each complete text message is handed to `on_text(str)` in the reactor's callback, without a
task per message. `bench/fanout_cluster_bench.py --client websockets` keeps the library client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _masked(opcode: int, payload: bytes) -> bytes:
    """One client frame (clients must mask, RFC 6455 §5.3); only control frames are sent."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


class LeanSocket(asyncio.Protocol):
    """One page's socket. `opened` resolves at the 101 (or fails with the refusal); `closed`
    resolves when the connection ends."""

    def __init__(self, request: bytes, accept: bytes, on_text: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.accept = accept  # the Sec-WebSocket-Accept the server must answer with
        self.on_text = on_text
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            if b" 101 " not in status + b" " or self.accept not in self.buffer[:end]:
                self._fail(ConnectionError(f"upgrade refused: {status!r}"))
                return
            del self.buffer[: end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buffer
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buf, pos + 2)
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if b1 & 0x80:  # a server must not mask (RFC 6455 §5.1)
                self._fail(ConnectionError("masked frame from the server"))
                return
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            opcode = b0 & 0x0F
            if opcode in (1, 2, 0):
                self.fragments.append(payload)
                if b0 & 0x80:  # FIN: the message is complete
                    message = b"".join(self.fragments)
                    self.fragments = []
                    self.on_text(message.decode("utf-8"))
            elif opcode == 9 and self.transport is not None:
                self.transport.write(_masked(10, payload))  # pong
            elif opcode == 8:
                if self.transport is not None:
                    self.transport.write(_masked(8, payload[:2]))
                    self.transport.close()
                return
        del buf[:pos]

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


async def lean_connect(
    url: str, *, origin: str, cookie: str, on_text: Callable[[str], None]
) -> LeanSocket:
    """Opens `url` (ws://host:port/path) as a page would; returns once upgraded."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Origin: {origin}\r\n"
        f"Cookie: sessionid={cookie}\r\n"
        "\r\n"
    ).encode()
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
    loop = asyncio.get_running_loop()
    _, sock = await loop.create_connection(lambda: LeanSocket(request, accept, on_text), host, port)
    await sock.opened
    return sock
