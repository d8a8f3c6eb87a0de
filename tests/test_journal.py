"""The journal (gate/journal.py): every transition journalled in its own script; the record
written from it later, in order, idempotently; nothing lost when the process that made a
change dies before the record is written; people told once, after the record commits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections

from sessions_app.gate import journal, services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatSession
from tests.live import as_from_a_terminal, server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> None:
    """The services as a server runs them: the record is left to a writer."""
    monkeypatch.setitem(settings.CHATGATE, "JOURNAL_FLUSH", "background")
    # This process's backup must not write behind the test's back.
    monkeypatch.setitem(settings.CHATGATE, "JOURNAL_STALE_MS", 10**9)


def people(n: int, prefix: str = "p") -> list[User]:
    return [User.objects.create_user(f"{prefix}{i}", password="x") for i in range(n)]


def entries() -> list[dict[str, str]]:
    return [fields for _, fields in journal._read(10_000)]


def test_a_change_survives_its_process_killed_before_the_record_is_written() -> None:
    """A real process opens three sessions and closes one (promoting the next), then is
    killed with SIGKILL before anything wrote the record; the sweeper, another process,
    writes it: every row with its first caller's reference, the promotion, the close."""
    users = people(3)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.journal_worker", *(str(u.pk) for u in users)],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    ids = json.loads(line)["ids"]
    assert ChatSession.objects.count() == 0  # the process died before any record was written
    assert [e["e"] for e in entries()] == ["o", "o", "o", "c", "a"]

    sweeper = subprocess.run(
        [sys.executable, "manage.py", "sweep_sessions"],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sweeper.returncode == 0, sweeper.stderr
    rows = {str(r.id): r for r in ChatSession.objects.all()}
    assert set(rows) == set(ids)
    first, second, third = (rows[sid] for sid in ids)
    assert (first.state, first.close_reason, first.client_session_id) == ("closed", "user", "ref-0")
    assert first.activated_at is not None and first.closed_at >= first.activated_at
    assert (second.state, second.client_session_id, second.opened_via) == ("active", "ref-1", "api")
    assert second.activated_at is not None and second.activated_at >= second.created_at
    assert (third.state, third.client_session_id) == ("queued", "ref-2")
    assert [r.user_id for r in (first, second, third)] == [u.pk for u in users]
    assert journal.pending() == 0  # trimmed once written (P8: it does not grow)


def test_the_record_follows_the_journal_in_order_and_a_replay_changes_nothing(
    background: None,
) -> None:
    """Two flushers may read the same entries, or one may die before trimming: applying a
    batch twice, or an older part after a newer one, leaves the record as it was."""
    get_manager().set_limits({"max_active_sessions": 1})
    a, b = people(2)
    first = services.session_open(user=a, via="page")
    second = services.session_open(user=b, via="api", client_session_id="mine")
    services.session_close(session_id=first.session_id, reason="admin", note="bye")
    services.session_close(session_id=second.session_id, reason="user")
    batch = entries()
    assert [(e["e"], e["id"]) for e in batch] == [
        ("o", first.session_id),
        ("o", second.session_id),
        ("c", first.session_id),
        ("a", second.session_id),
        ("c", second.session_id),
    ]
    assert ChatSession.objects.count() == 0  # left to the writer

    journal._apply(batch)

    def record() -> dict[str, tuple[Any, ...]]:
        return {
            str(r.id): (r.state, r.close_reason, r.close_note, r.activated_at, r.closed_at)
            for r in ChatSession.objects.all()
        }

    written = record()
    assert written[first.session_id][:3] == ("closed", "admin", "bye")
    assert written[second.session_id][:2] == ("closed", "user")
    assert written[second.session_id][3] is not None  # its admission is recorded too

    journal._apply(batch)  # the same batch again
    journal._apply(batch[:4])  # an older part after the newer: never back to active
    journal._apply(batch[:2])
    assert record() == written

    journal.flush()
    assert record() == written and journal.pending() == 0


def test_the_sweepers_writer_records_changes_and_tells_people_promptly(
    background: None,
) -> None:
    """A server's services leave the record to the sweeper's writer (another process): the
    row appears, and the person hears `session.closed`, without any flush in this process."""
    (person,) = people(1)
    sweeper = subprocess.Popen(
        [sys.executable, "manage.py", "sweep_sessions", "--loop"],
        cwd=ROOT,
        # Its backup (the stand-in for a missing writer) kept out: the writer must do it.
        env=server_env(JOURNAL_FLUSH="background", JOURNAL_STALE_MS=str(10**9)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,  # stopped with SIGINT below
    )
    try:
        # Once its start-up reconcile is done (which writes the journal too), only the
        # sweeper's writer is left to write the record.
        manager = get_manager()
        for _ in range(600):
            if manager.client.exists(manager.keys.reconciled):
                break
            time.sleep(0.05)
        layer = get_channel_layer()
        opened = services.session_open(user=person, via="api")

        async def closed_notice() -> dict[str, Any]:
            channel = await layer.new_channel()
            await layer.group_add(f"gate.session.{opened.session_id}", channel)
            for _ in range(600):
                if await asyncio.to_thread(_recorded, opened.session_id):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the writer did not record the open within 30 s")
            await asyncio.to_thread(
                services.session_close, session_id=opened.session_id, reason="user"
            )
            return await asyncio.wait_for(layer.receive(channel), timeout=30)

        notice = async_to_sync(closed_notice)()
        assert notice["type"] == "session.closed" and notice["reason"] == "user"
        # People are told after the record commits: the row is closed already.
        row = ChatSession.objects.get(id=opened.session_id)
        assert (row.state, row.close_reason) == ("closed", "user")
        assert journal.pending() == 0
    finally:
        sweeper.send_signal(signal.SIGINT)
        try:
            sweeper.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sweeper.kill()
            sweeper.wait()


def _recorded(session_id: str) -> bool:
    try:
        return ChatSession.objects.filter(id=session_id).exists()
    finally:
        connections.close_all()


def test_racing_first_opens_record_the_first_callers_reference(background: None) -> None:
    """The same-person race with the record written later: one row, with what the caller
    Redis created the session for sent (one `o` entry, whoever wins)."""
    (person,) = people(1)
    barrier = threading.Barrier(12)
    outcomes: list[tuple[int, services.OpenOutcome]] = []

    def open_once(index: int) -> None:
        barrier.wait()
        outcomes.append(
            (index, services.session_open(user=person, via="api", client_session_id=f"r{index}"))
        )
        connections.close_all()

    threads = [threading.Thread(target=open_once, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (creator,) = [i for i, o in outcomes if o.created]
    assert {o.client_session_id for _, o in outcomes} == {f"r{creator}"}
    assert [e["e"] for e in entries()] == ["o"]
    journal.flush()
    row = ChatSession.objects.get()
    assert (row.client_session_id, row.opened_via) == (f"r{creator}", "api")


def test_a_question_can_point_at_a_seat_whose_row_is_still_in_the_journal(
    background: None,
) -> None:
    """A chat message's foreign key needs the seat's row: asking writes the journal first."""
    from sessions_app.chat import messages

    (person,) = people(1)
    seat = services.session_open(user=person, via="page")
    assert not ChatSession.objects.filter(id=seat.session_id).exists()
    asked = messages.message_ask(owner=person, seat_id=seat.session_id, content="hello")
    assert str(asked.question.seat_id) == seat.session_id


def test_the_journal_entry_is_written_in_the_same_script_as_the_transition(
    background: None,
) -> None:
    """No entry without its change and no change without its entry: a refused close (the
    state check of `only_if_state`) journals nothing; an accepted one journals exactly once."""
    (person,) = people(1)
    seat = services.session_open(user=person)
    refused = services.session_close(
        session_id=seat.session_id, reason="admin", only_if_state="queued"
    )
    assert refused.refused_state == "active"
    assert [e["e"] for e in entries()] == ["o"]
    services.session_close(session_id=seat.session_id, reason="user")
    services.session_close(session_id=seat.session_id, reason="user")  # not live any more
    assert [e["e"] for e in entries()] == ["o", "c"]
    assert os.environ.get("JOURNAL_FLUSH") != "inline"
    time.sleep(0)  # nothing in this process wrote the record
    assert ChatSession.objects.count() == 0


def test_without_a_writer_each_server_process_writes_what_waited_too_long(
    background: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sweeper running: the process's backup writes entries older than JOURNAL_STALE_MS."""
    monkeypatch.setitem(settings.CHATGATE, "JOURNAL_STALE_MS", 0)
    (person,) = people(1)
    seat = services.session_open(user=person, via="api")
    for _ in range(600):
        if _recorded(seat.session_id):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the backup did not write the record within 30 s")
    assert ChatSession.objects.get(id=seat.session_id).state == "active"


def test_entries_written_inside_a_transaction_that_rolls_back_stay_in_the_journal(
    background: None,
) -> None:
    """A flush inside a caller's transaction (a question with a file asks inside one) trims
    nothing until it commits: rolled back, the entries are still there for the next flush."""
    from django.db import transaction

    (person,) = people(1)
    seat = services.session_open(user=person, via="api")
    with pytest.raises(RuntimeError), transaction.atomic():
        journal.flush()
        assert ChatSession.objects.filter(id=seat.session_id).exists()
        raise RuntimeError("the caller fails after the flush")
    assert not ChatSession.objects.filter(id=seat.session_id).exists()
    assert journal.pending() == 1
    journal.flush()
    assert ChatSession.objects.get(id=seat.session_id).state == "active"
    assert journal.pending() == 0


def test_a_writer_thread_outlives_a_database_that_refuses_even_its_clean_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step fails and so does closing the broken connection (here: the database refuses
    the thread): the thread logs, waits and tries again; it is the process's only writer."""
    monkeypatch.setattr(journal, "IDLE_SECONDS", 0.01)

    def refuse() -> None:
        raise RuntimeError("the database refuses this thread")

    monkeypatch.setattr(journal, "close_old_connections", refuse)
    steps: list[float] = []
    done = threading.Event()

    def step() -> None:
        if done.is_set():
            raise SystemExit  # ends the thread quietly once the test has seen enough
        steps.append(time.monotonic())
        if len(steps) < 3:
            refuse()
        time.sleep(0.05)

    real_hook = threading.excepthook

    def hook(args: Any) -> None:  # the SystemExit that ends the thread is no error
        if args.exc_type is not SystemExit:
            real_hook(args)

    monkeypatch.setattr(threading, "excepthook", hook)
    thread = journal._start(step, "test-writer")
    for _ in range(200):
        if len(steps) >= 3:
            break
        time.sleep(0.01)
    alive = thread.is_alive()
    done.set()
    assert len(steps) >= 3, steps
    assert alive
    thread.join(timeout=5)
