"""Request counts added up in the process and written to Redis in one pipeline a second.

Writing every request's counts as it ends was a Redis pipeline per request, handed to a thread:
0.3 ms of CPU and a thread crossing on each create of the P9 benchmark (README, "P9"), for
numbers that are read once a minute (the console's charts, alerts) or once a scrape
(`/metrics`). Here the middleware adds a request to this process's tally (a lock and a few dict
updates), and a writer thread sends the sums every FLUSH_SECONDS: one pipeline per process per
second, whatever the request rate. The Redis hashes, their fields and their meaning are
exactly those `request_record` writes (`record.request_fields` queues both).

What it costs: another process (the sweeper's alerts, another server's `/metrics`) sees a
request up to FLUSH_SECONDS late; a reader in this process writes the tally first (`flush()`).
A process killed with SIGKILL loses at most its last second of counts. A write that fails
(Redis down) keeps its sums for the next one, so an outage delays counts instead of losing
them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from sessions_app.gate.admission import AdmissionManager, get_manager
from sessions_app.metrics.record import request_fields

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class _Sums:
    """Takes the calls `request_fields` makes on a pipeline and adds them up."""

    def __init__(self) -> None:
        self.ints: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.floats: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.expiries: dict[str, int] = {}

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self.ints[(key, field)] += amount

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.floats[(key, field)] += amount

    def expire(self, key: str, seconds: int) -> None:
        self.expiries[key] = seconds

    def merge(self, other: _Sums) -> None:
        for pair, amount in other.ints.items():
            self.ints[pair] += amount
        for pair, value in other.floats.items():
            self.floats[pair] += value
        self.expiries.update(other.expiries)

    def __bool__(self) -> bool:
        return bool(self.ints or self.floats)


_lock = threading.Lock()
# Held across a whole flush: a reader's flush must not return while the writer thread is still
# sending sums it took a moment earlier, or the reader reads Redis without them (seen once in a
# full test run: /metrics lacked requests made just before).
_flush_lock = threading.Lock()
_sums = _Sums()
_writer: threading.Thread | None = None


def add(
    *,
    group: str | None,
    status: int,
    seconds: float,
    route: str | None,
    method: str,
    manager: AdmissionManager | None = None,
) -> None:
    """Counts one request in this process's tally; the writer sends it within FLUSH_SECONDS."""
    keys = (manager or get_manager()).keys
    with _lock:
        request_fields(
            _sums,
            keys,
            group=group,
            status=status,
            seconds=seconds,
            route=route,
            method=method,
            now=time.time(),
        )
    _ensure_writer()


def flush(manager: AdmissionManager | None = None) -> None:
    """Writes what this process has counted so far (readers call it before reading)."""
    with _flush_lock:
        _flush(manager)


def _flush(manager: AdmissionManager | None) -> None:
    global _sums
    with _lock:
        taken, _sums = _sums, _Sums()
    if not taken:
        return
    manager = manager or get_manager()
    pipe = manager.client.pipeline(transaction=False)
    for (key, field), amount in taken.ints.items():
        pipe.hincrby(key, field, amount)
    for (key, field), value in taken.floats.items():
        pipe.hincrbyfloat(key, field, round(value, 3))
    for key, ttl in taken.expiries.items():
        pipe.expire(key, ttl)
    try:
        pipe.execute()
    except Exception:
        with _lock:
            taken.merge(_sums)  # counted while this write was failing
            _sums = taken
        raise


def _run() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            flush()
        except Exception:  # Redis away: the sums wait for the next write
            logger.debug("request metrics not written yet", exc_info=True)


def _ensure_writer() -> None:
    global _writer
    if _writer is not None:
        return
    with _lock:
        if _writer is None:
            _writer = threading.Thread(target=_run, name="chatgate-metrics-tally", daemon=True)
            _writer.start()
