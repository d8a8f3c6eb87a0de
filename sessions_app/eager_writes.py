"""Daphne's socket writes without an event-loop registration per write.

Twisted's asyncio reactor writes a connection's buffered bytes only once the loop reports the
socket writable: every `transport.write` on an idle connection registers the socket with the
loop (`add_writer`: an epoll_ctl and a Handle), the next loop pass reports it writable, Twisted
calls `doWrite` through its logging and context wrappers, and `doWrite`, having sent
everything, unregisters it again (another epoll_ctl). A connection whose send buffer is empty
is always writable, so all of that is spent to learn what is already known. In a fan-out round
(issue 11, P3: 5,000 frames per process) this registration dance was ~40% of the round's
samples under py-spy, more than building and framing the frames.

`apply()` makes the running reactor defer a new writer instead: connections that ask to write
during one loop pass are collected, and one callback on the next pass calls each one's
`doWrite` (the same method the reactor would call; it sends, handles producers, half-close and
errors). Only a connection that could not send everything is registered with the loop, as
before. So writes to one connection within a pass are still coalesced into one send, nothing is
written earlier or in another order than before, and a slow reader is still waited for by the
loop. Only plain, connected TCP connections take this path (not TLS, not a connecting client,
whose `doWrite` means something else).

`CHATGATE_EAGER_WRITES=0` leaves the reactor as it is (the benchmark's same-run baseline).
Called from `config/asgi.py`; `tests/test_eager_writes.py` runs it on a real reactor.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("CHATGATE_EAGER_WRITES", "1") != "0"


class _Deferred:
    """The writers collected in this loop pass, and those whose doWrite is running."""

    def __init__(self, reactor: Any) -> None:
        from twisted.internet import tcp

        self.reactor = reactor
        self.connection_type = tcp.Connection
        self.add_writer = reactor.addWriter  # the reactor's own, bound
        self.remove_writer = reactor.removeWriter
        self.get_writers = reactor.getWriters
        self.remove_all = reactor.removeAll
        self.pending: dict[Any, None] = {}  # insertion-ordered: written in the order asked
        self.flushing: set[Any] = set()
        self.scheduled = False

    def addWriter(self, writer: Any) -> None:  # Twisted's names
        if (
            writer in self.pending
            or writer in self.flushing
            or not isinstance(writer, self.connection_type)
            or not writer.connected
            or getattr(writer, "TLS", False)
            or writer in self.reactor._writers
        ):
            if writer not in self.pending and writer not in self.flushing:
                self.add_writer(writer)
            return
        self.pending[writer] = None
        if not self.scheduled:
            self.scheduled = True
            self.reactor._asyncioEventloop.call_soon(self.flush)

    def removeWriter(self, writer: Any) -> None:
        self.pending.pop(writer, None)
        self.flushing.discard(writer)
        self.remove_writer(writer)

    def getWriters(self) -> list[Any]:
        return [*self.get_writers(), *self.pending]

    def removeAll(self) -> list[Any]:
        writers = list(self.pending)
        self.pending.clear()
        return [*self.remove_all(), *writers]

    def flush(self) -> None:
        self.scheduled = False
        writers, self.pending = self.pending, {}
        for writer in writers:
            self.flushing.add(writer)
            # Exactly what the reactor does when the loop reports the socket writable
            # (AsyncioSelectorReactor._readOrWrite), without the wait.
            if writer.fileno() == -1:
                why: Any = _no_file_descriptor()
            else:
                try:
                    why = writer.doWrite()
                except Exception as exc:
                    why = exc
                    logger.exception("doWrite failed")
            if why:
                self.flushing.discard(writer)
                self.reactor._disconnectSelectable(writer, why, False)
            elif writer in self.flushing:
                # doWrite did not stop writing: bytes are left (a full socket buffer). Wait
                # for the loop to say the socket is writable, as Twisted always did.
                self.flushing.discard(writer)
                self.add_writer(writer)


def _no_file_descriptor() -> Any:
    from twisted.internet.main import CONNECTION_LOST

    return CONNECTION_LOST


def apply(reactor: Any = None) -> bool:
    """Installs the deferred writes on `reactor` (the installed one by default) if it is
    Twisted's asyncio reactor; True if it did (idempotent)."""
    if not enabled():
        return False
    if reactor is None:
        import sys

        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is None:
            return False  # no reactor installed: not under daphne
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        return False
    target: Any = reactor  # its methods are replaced on the instance, which mypy forbids
    if isinstance(getattr(target, "_eager_writes", None), _Deferred):
        return True
    deferred = _Deferred(target)
    target._eager_writes = deferred
    # Instance attributes: only this reactor changes, and its class is left as Twisted made it.
    target.addWriter = deferred.addWriter
    target.removeWriter = deferred.removeWriter
    target.getWriters = deferred.getWriters
    target.removeAll = deferred.removeAll
    return True
