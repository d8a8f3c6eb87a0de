"""Issue 11, "The database": SQLite runs with WAL, a busy timeout and immediate transactions, and
one person's concurrent creates over several real daphne processes make one session that every
caller is answered with, recorded with the first caller's reference and `opened_via`.

Measured on main: 50 concurrent creates for one person made one session, but one caller got a
503 and the record lost the reference and `opened_via`: a caller that found the session already
live in Redis inserted the row first (without them), and the caller Redis had created it for
then hit the primary key (IntegrityError, answered 503).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from sessions_app.gate import services
from sessions_app.models import ApiToken, ChatSession
from tests.burst_client import Answer, request
from tests.live import DaphneServer, server_env, start_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]
CALLERS = 50


@pytest.fixture
def servers(tmp_path: Path) -> list[DaphneServer]:
    # The per-person budget (30 a minute) would answer most of the 50 with 429, correctly.
    started = [
        start_daphne(tmp_path, name=f"d{i}", API_CREATE_RATE_PER_MINUTE="1000") for i in range(4)
    ]
    yield started
    for server in started:
        server.stop()


def test_sqlite_runs_with_wal_a_busy_timeout_and_immediate_transactions() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite settings only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 10_000  # milliseconds
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_the_servers_tests_start_use_the_test_database_on_either_engine() -> None:
    """Daphne processes must write where the test reads: the test database (Django renamed it
    when it created it), never the database DATABASE_URL names, on SQLite and PostgreSQL."""
    import dj_database_url

    given = dj_database_url.parse(server_env()["DATABASE_URL"])
    ours = connection.settings_dict
    assert given["ENGINE"] == ours["ENGINE"]
    assert given["NAME"] == ours["NAME"]
    if connection.vendor == "postgresql":
        assert ours["NAME"].startswith("test_")
        assert (given["HOST"], given["PORT"], given["USER"]) == (
            ours["HOST"],
            ours["PORT"],
            ours["USER"],
        )


PEOPLE = 10


async def _same_person(ports: list[int], token: str) -> list[Answer | BaseException]:
    """CALLERS creates for each of PEOPLE people, all at once, spread over the processes; each
    caller of person p sends p's reference, as one client retrying would."""
    calls = [
        request(
            ports[(p + i) % len(ports)],
            "POST",
            "/api/v1/session/create",
            body={"user_id": f"person{p}", "session_id": f"client-ref-{p}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        for i in range(CALLERS)
        for p in range(PEOPLE)
    ]
    return await asyncio.gather(*calls, return_exceptions=True)


def test_50_concurrent_creates_for_one_person_answer_everyone_with_one_session(
    servers: list[DaphneServer],
) -> None:
    owner = get_user_model().objects.create_user("gateway")
    _row, token = ApiToken.issue(name="gateway", owner=owner, can_act_for_users=True)
    # Half the people exist already; the burst provisions the other half.
    for p in range(0, PEOPLE, 2):
        get_user_model().objects.create_user(f"person{p}")
    answers = asyncio.run(_same_person([s.port for s in servers], token))

    done = [a for a in answers if isinstance(a, Answer)]
    assert len(done) == CALLERS * PEOPLE, [a for a in answers if not isinstance(a, Answer)][:3]
    failed = [a.body for a in done if a.status >= 300]
    assert not failed, (failed[:3], [e for s in servers for e in s.errors()])
    for p in range(PEOPLE):
        mine = [a for a in done if a.body["user_id"] == f"person{p}"]
        statuses = collections.Counter(a.status for a in mine)
        assert statuses == {201: 1, 200: CALLERS - 1}
        ids = {a.body["session_id"] for a in mine}
        assert len(ids) == 1
        assert {a.body["client_session_id"] for a in mine} == {f"client-ref-{p}"}
        record = ChatSession.objects.get(user__username=f"person{p}")
        assert str(record.id) in ids
        assert record.client_session_id == f"client-ref-{p}"
        assert record.opened_via == "api"
    assert ChatSession.objects.count() == PEOPLE


def test_threads_racing_the_first_open_keep_the_first_callers_reference() -> None:
    """The service alone, with real threads: whichever thread inserts the row, it holds what the
    caller Redis created the session for sent, never a later caller's (here: none)."""
    person = get_user_model().objects.create_user("racer")
    barrier = threading.Barrier(20)
    outcomes: list[tuple[int, services.OpenOutcome]] = []
    errors: list[BaseException] = []

    def open_once(index: int) -> None:
        try:
            barrier.wait()
            outcome = services.session_open(
                user=person, via="api", client_session_id=f"ref-{index}"
            )
            outcomes.append((index, outcome))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=open_once, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert len({o.session_id for _, o in outcomes}) == 1
    first = [index for index, o in outcomes if o.created]
    assert len(first) == 1
    record = ChatSession.objects.get()
    assert record.opened_via == "api"
    assert record.client_session_id == f"ref-{first[0]}"
