"""Deferred writes on Twisted's asyncio reactor (sessions_app/eager_writes.py), on a real reactor
and real sockets, in a process of its own (a reactor is installed once per process).

Writes to an idle connection go out on the next loop pass without registering the socket with
the loop; what Twisted promised stays: bytes arrive whole and in order (also when the socket
buffer fills and the loop must wait for a slow reader), a half-close after the last write sends
everything first, and a write to a peer that is gone ends the connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import asyncio, json, socket, struct, sys, threading, time
from twisted.internet import asyncioreactor

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)
from twisted.internet import protocol, reactor

from sessions_app import eager_writes

results = {"applied": eager_writes.apply(), "lost": False}
registrations = [0]
real_add_writer = loop.add_writer


def counting_add_writer(*args, **kwargs):
    registrations[0] += 1
    return real_add_writer(*args, **kwargs)


loop.add_writer = counting_add_writer
BIG = bytes(range(256)) * 40_000  # 10 MB: more than the socket buffers hold
held = []


class Writer(protocol.Protocol):
    def connectionMade(self):
        held.append(self)

    def dataReceived(self, data):
        for command in data.split():
            if command == b"small":
                for i in range(100):  # many writes in one loop pass
                    self.transport.write(b"%05d," % i)
            elif command == b"big":
                self.transport.write(BIG)
            elif command == b"close":
                self.transport.write(b"bye")
                self.transport.loseConnection()

    def connectionLost(self, reason):
        if self is held[-1]:
            results["lost"] = True


factory = protocol.Factory.forProtocol(Writer)
port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port


def read(sock, size):
    got = b""
    while len(got) < size:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    return got


def client():
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"small\n")
        results["small"] = read(sock, 600) == b"".join(b"%05d," % i for i in range(100))
        results["small_registrations"] = registrations[0]
        sock.sendall(b"big\n")
        time.sleep(0.5)  # a slow reader: the server's socket buffer fills up
        results["big"] = read(sock, len(BIG)) == BIG
        results["big_registrations"] = registrations[0]
        sock.sendall(b"close\n")
        results["close"] = read(sock, 1 << 20) == b"bye"  # then EOF
        sock.close()

        gone = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.2)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()  # a reset: the peer is gone
        time.sleep(0.2)
        for _ in range(5):
            reactor.callFromThread(lambda: held[-1].transport.write(b"x" * 1000))
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        reactor.callFromThread(reactor.stop)


threading.Thread(target=client, daemon=True).start()
reactor.run()
results["writers_left"] = len(reactor.getWriters())
print(json.dumps(results))
"""


def _run(**env: str) -> dict[str, object]:
    answer = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    return json.loads(answer.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_writes_to_idle_connections_skip_the_loop_registration_and_keep_every_promise() -> None:
    results = _run()
    assert results["applied"] is True
    assert results["small"] is True  # 100 writes in one pass arrive whole and in order
    assert results["small_registrations"] == 0  # ... without registering the socket once
    assert results["big"] is True  # 10 MB to a slow reader arrives whole
    assert results["big_registrations"] > 0  # ... the loop waited for it to drain, as before
    assert results["close"] is True  # the last write goes out before the half-close
    assert results["lost"] is True  # a write to a reset peer ends the connection
    assert results["writers_left"] == 0


@pytest.mark.parametrize("value", ["0"])
def test_turned_off_the_reactor_is_twisted_s_own(value: str) -> None:
    results = _run(CHATGATE_EAGER_WRITES=value)
    assert results["applied"] is False
    assert results["small"] is True and results["big"] is True and results["close"] is True
    assert results["small_registrations"] > 0  # every write registered the socket
