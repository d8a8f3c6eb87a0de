"""The journal: session changes on their way from Redis to the SQL record (issue 11, P1).

Every Lua transition appends what it changed to one Redis stream (`keys.journal`), in the same
script as the change: `o` a session opened (with the state it starts in, who, how, the first
caller's reference), `a` one was admitted, `c` one ended (reason, state before, staff note),
each one JSON array (lua/_lib.lua).
The change and its entry therefore exist together or not at all. This module writes the
entries to `ChatSession` in batches, one transaction per batch, and sends the notices they
imply after that commit, so the request that made a change does not wait for the database.

What is promised:

* A process that dies after a transition loses nothing: the entry is in Redis, and the next
  flush by any process (another server's flusher, the sweeper every second) writes it.
* The record follows the journal's order, and applying an entry twice changes nothing: a row
  is inserted only if missing, and a state only moves forward (queued -> active -> closed), so
  two flushers reading the same entries, or a flusher that dies before trimming, are harmless.
  Entries are trimmed from the stream only after their transaction committed.
* Redis losing data loses the journal with the transitions it describes (they are in the same
  place, written in one step); `reconcile` then repairs the record from what Redis still holds,
  as before (sessions the record thinks live are closed as `lost`).
* Notices (session.activated / session.closed, the queue moved) go out once, from the flush
  that changed the row, in journal order, after the commit.

Who writes (`JOURNAL_FLUSH`): `background` (the default) — the sweeper's writer thread
(`run_writer`, in its own process) blocks on the stream and writes each batch within
milliseconds, so the servers spend their CPU on requests (a writer thread inside a server
process would take the GIL from the request threads: measured, it cut the services' rate from
2,150 to 390 pairs/s); each server process keeps a backup that writes what has waited over
JOURNAL_STALE_MS (no sweeper running). `inline` (tests, one-off commands) — the service that
made the change writes it before returning, as before the journal. Code that needs the row now
(a chat message pointing at its seat, reconcile) calls `flush()` or `ensure_recorded()` first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from django.db import close_old_connections, connection, transaction
from django.db.models import Field

from sessions_app import conf, notifications
from sessions_app.gate.admission import AdmissionManager, get_manager, redis_errors
from sessions_app.models import ChatSession

logger = logging.getLogger(__name__)

# Entries per transaction: bounded so that one flush never holds the database for long.
BATCH = 500
# How long the writer waits after an entry arrives, so that a burst becomes one batch.
GATHER_SECONDS = 0.002
# How often a server process's backup looks at the journal. How old its oldest entry must be
# before the backup writes it itself is JOURNAL_STALE_MS (2 s): well above the writer's usual
# delay (milliseconds), so that with a sweeper running the servers spend no CPU on the record.
IDLE_SECONDS = 0.5
# The lock that keeps writers of several processes from doing the same work. It only saves
# work (applying twice is harmless), so a dead holder just delays the others this long.
LOCK_MS = 2000

_FIELDS = (
    "state",
    "activated_at",
    "admitted_over_limit",
    "closed_at",
    "close_reason",
    "close_note",
)
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _when(value: str) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


def _session_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:  # not a session of ours (a benchmark's or a test's made-up id)
        return None


# The names of an entry's values by kind (lua/_lib.lua `journal`), for the code below.
_SHAPES = {
    "o": ("id", "u", "s", "l", "t", "v", "r", "at"),
    "a": ("id", "ov", "at"),
    "c": ("id", "r", "p", "at", "n"),
}


def _entry(raw: Any) -> dict[str, str]:
    kind, *values = json.loads(raw)
    return {"e": kind, **dict(zip(_SHAPES.get(kind, ()), map(str, values), strict=False))}


def _read(limit: int) -> list[tuple[str, dict[str, str]]]:
    manager = get_manager()
    with redis_errors():
        raw: Any = manager.client.xrange(manager.keys.journal, "-", "+", count=limit)
    return [(_text(eid), _entry(fields[b"j"])) for eid, fields in raw]


def _trim(last_id: str) -> None:
    """Drops every entry up to `last_id` (MINID keeps ids >= the one given, so the next one)."""
    ms, seq = last_id.split("-")
    manager = get_manager()
    with redis_errors():
        manager.client.xtrim(manager.keys.journal, minid=f"{ms}-{int(seq) + 1}")


def _update_rows(rows: list[ChatSession]) -> None:
    """One UPDATE statement run for many rows (executemany). `bulk_update` builds a CASE of
    one Q per row and field: measured 27 s of ORM work for 4,000 entries, which is the
    writer's whole budget."""
    meta = ChatSession._meta
    fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in _FIELDS]
    pk = cast("Field[Any, Any]", meta.pk)
    quote = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(meta.db_table),
        ", ".join(f"{quote(str(f.column))} = %s" for f in fields),
        quote(str(pk.column)),
    )
    params = [
        [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
        + [pk.get_db_prep_save(row.pk, connection)]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _apply(entries: list[dict[str, str]]) -> Callable[[], None]:
    """Writes one batch to the record in one transaction; returns the notices to send after."""
    from django.contrib.auth import get_user_model

    opens = [e for e in entries if e.get("e") == "o" and _session_id(e.get("id", ""))]
    user_ids = {int(e["u"]) for e in opens if e.get("u", "").isdigit()}
    known = set(
        get_user_model().objects.filter(pk__in=user_ids).values_list("pk", flat=True)
        if user_ids
        else ()
    )
    rows = [
        ChatSession(
            id=e["id"],
            user_id=int(e["u"]),
            state=e["s"],
            lane=e["l"],
            ticket=int(e["t"]),
            opened_via=e["v"],
            client_session_id=e.get("r", ""),
            created_at=_when(e["at"]),
            activated_at=_when(e["at"]) if e["s"] == ChatSession.State.ACTIVE else None,
        )
        for e in opens
        # A person deleted since (or a made-up user key): no row, as reconcile would decide.
        if e.get("u", "").isdigit() and int(e["u"]) in known
    ]
    changes = [e for e in entries if e.get("e") in ("a", "c") and _session_id(e.get("id", ""))]
    activated: list[str] = []
    closed: dict[str, tuple[str, str]] = {}
    queue_moved = any(e["s"] == "queued" and e["l"] != ChatSession.Lane.NORMAL for e in opens)
    with transaction.atomic():
        if rows:
            ChatSession.objects.bulk_create(rows, ignore_conflicts=True)
        # Locked in id order, so that two flushers of one batch never deadlock (PostgreSQL).
        current = {
            str(s.id): s
            for s in ChatSession.objects.select_for_update()
            .filter(id__in={e["id"] for e in changes})
            .only("id", *_FIELDS)
            .order_by("id")
        }
        dirty: dict[str, ChatSession] = {}
        for e in changes:
            sid, row = e["id"], current.get(e["id"])
            if e["e"] == "a":
                # Forward only: a replayed admission never reopens a closed seat.
                if row is not None and row.state != ChatSession.State.QUEUED:
                    continue
                if row is not None:
                    row.state = ChatSession.State.ACTIVE
                    row.activated_at = _when(e["at"])
                    row.admitted_over_limit = e.get("ov") == "1"
                    dirty[sid] = row
                activated.append(sid)
                queue_moved = True
            else:
                if row is not None and row.state == ChatSession.State.CLOSED:
                    continue
                if row is not None:
                    row.state = ChatSession.State.CLOSED
                    row.closed_at = _when(e["at"])
                    row.close_reason = e["r"]
                    row.close_note = e.get("n", "")[:300]
                    dirty[sid] = row
                closed[sid] = (e["r"], e.get("n", ""))
                queue_moved = queue_moved or e.get("p") == "queued"
        if dirty:
            _update_rows(list(dirty.values()))

    def notify() -> None:
        if entries:
            notifications.gate_changes(
                activated=activated,
                closed={sid: reason for sid, (reason, _) in closed.items()},
                notes={sid: note for sid, (_, note) in closed.items()},
                queue_moved=queue_moved,
            )

    return notify


def flush() -> int:
    """Writes everything journalled so far to the record; returns how many entries it read.

    Safe to call from any thread or process at any time (see the module's promises). No lock
    is taken: a caller may already hold a write transaction (SQLite's are immediate), and a
    lock held by a flush waiting for that transaction would deadlock; two flushes at once only
    repeat each other's harmless work."""
    done = 0
    nested = _in_callers_transaction()
    while True:
        batch = _read(BATCH)
        if not batch:
            return done
        notify = _apply([fields for _, fields in batch])
        last = batch[-1][0]
        if nested:
            # Inside a caller's transaction the rows are not committed yet: trimmed (and
            # people told) when it commits; rolled back, the entries stay for the next flush
            # (which is also why a flush inside one makes a single pass).
            def committed(last: str = last, notify: Callable[[], None] = notify) -> None:
                _trim(last)
                notify()

            transaction.on_commit(committed)
        else:
            _trim(last)
            transaction.on_commit(notify)
        done += len(batch)
        if nested or len(batch) < BATCH:
            return done


def _in_callers_transaction() -> bool:
    """A transaction of the caller's own is open. The one a test case wraps around each test
    does not count, as for Django's own `durable` check: it stands for autocommit."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def ensure_recorded(session_id: str) -> None:
    """For code that is about to point at the seat's row (a chat message's foreign key)."""
    if not ChatSession.objects.filter(id=session_id).exists():
        flush()


def pending(manager: AdmissionManager | None = None) -> int:
    """Entries not yet written to the record (/metrics, tests)."""
    manager = manager or get_manager()
    with redis_errors():
        return int(manager.client.xlen(manager.keys.journal))


def _locked_flush(token: str) -> bool:
    """A flush under the lock that keeps background writers from repeating each other's work
    (it only saves work: applying twice is harmless). False if another process holds it."""
    manager = get_manager()
    lock_key = manager.keys.journal_lock
    with redis_errors():
        if not manager.client.set(lock_key, token, nx=True, px=LOCK_MS):
            return False
    try:
        flush()
    finally:
        with redis_errors():
            manager.client.eval(_RELEASE, 1, lock_key, token)
    return True


def oldest_age_ms(manager: AdmissionManager | None = None) -> float:
    """How long the oldest entry has waited (stream ids are Redis's clock in ms), 0 if none."""
    manager = manager or get_manager()
    with redis_errors():
        oldest: Any = manager.client.xrange(manager.keys.journal, "-", "+", count=1)
    if not oldest:
        return 0.0
    return manager.server_time() * 1000 - int(_text(oldest[0][0]).split("-")[0])


def _forever(step: Callable[[], None], name: str) -> None:
    failing = False
    while True:
        try:
            step()
            failing = False
        except Exception:
            # Redis or the database is away: the entries wait in Redis; try again shortly.
            # Said once per outage, not twice a second.
            log = logger.debug if failing else logger.warning
            log("journal %s: cannot write the record yet; retrying", name, exc_info=True)
            failing = True
            # A connection that cannot even be checked (or a database that refuses this thread)
            # must not end the thread: it is the record's only writer in this process.
            try:
                close_old_connections()
            except Exception:
                logger.debug(
                    "journal %s: closing the broken connection failed", name, exc_info=True
                )
            time.sleep(IDLE_SECONDS)


def _start(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=_forever, args=(target, name), name=name, daemon=True)
    thread.start()
    return thread


def run_writer() -> threading.Thread:
    """The journal's writer (the sweeper runs one, in its own process, so that the servers'
    processes spend no CPU on the record): it blocks on the stream and writes each batch
    within milliseconds of its first entry."""
    manager = get_manager()
    token = uuid.uuid4().hex

    def step() -> None:
        with redis_errors():
            # Returns at once while entries wait (any id above 0-0), else when one arrives.
            waiting = manager.client.xread({manager.keys.journal: "0-0"}, count=1, block=1000)
        if waiting:
            time.sleep(GATHER_SECONDS)  # a burst becomes one batch
            if not _locked_flush(token):
                time.sleep(0.005)  # another writer is at it; look again shortly

    return _start(step, "chatgate-journal-writer")


class _Backup:
    """Each server process's stand-in for a missing writer: every IDLE_SECONDS it looks at the
    oldest entry and writes the journal itself if that has waited JOURNAL_STALE_MS (no sweeper
    running, or it is stuck). Started by the first transition of the process."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                token = uuid.uuid4().hex

                def step() -> None:
                    time.sleep(IDLE_SECONDS)
                    if oldest_age_ms() >= int(conf.get("JOURNAL_STALE_MS")):
                        _locked_flush(token)

                self._thread = _start(step, "chatgate-journal-backup")


_backup = _Backup()


def after_transition() -> None:
    """Called by the services after each transition that journalled something: write it now
    ("inline"), or leave it to the writer, with this process's backup watching."""
    if conf.get("JOURNAL_FLUSH") == "inline":
        flush()
    else:
        _backup.ensure_started()
