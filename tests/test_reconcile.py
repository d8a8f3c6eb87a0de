"""`reconcile_sessions` / reconcile.sessions_reconcile after Redis keys are deleted by hand."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from sessions_app.gate import admission, services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatSession, GateSettings

pytestmark = pytest.mark.django_db


def run(*args: Any) -> str:
    out = StringIO()
    call_command("reconcile_sessions", *args, stdout=out)
    return out.getvalue()


def open_for(*names: str) -> list[str]:
    users = get_user_model().objects
    return [
        services.session_open(user=users.create_user(username=n), via="api").session_id
        for n in names
    ]


def state_of(session_id: str) -> tuple[str, str]:
    record = ChatSession.objects.get(id=session_id)
    return record.state, record.close_reason


@pytest.fixture
def gate() -> Any:
    """Limit 2, recorded and live (as a running deployment has it)."""
    GateSettings.objects.update_or_create(pk=1, defaults={"max_active_sessions": 2})
    get_manager().set_limits({"max_active_sessions": 2})
    return get_manager()


def test_nothing_to_do_when_they_agree(gate):
    open_for("ann", "ben", "cat")
    assert "agree; nothing to do" in run()


def test_a_session_redis_lost_is_closed_as_lost_and_dry_run_changes_nothing(gate):
    ann, _ben = open_for("ann", "ben")
    user_key = str(get_user_model().objects.get(username="ann").pk)
    # Lose ann's session from Redis entirely, as a partial data loss would.
    gate.client.delete(gate.keys.session(ann), gate.keys.user(user_key))
    gate.client.zrem(gate.keys.active, ann)
    gate.client.zrem(gate.keys.seen, ann)

    dry = run("--dry-run")
    assert "Reconcile (dry run)" in dry and ann in dry and "Nothing changed" in dry
    assert state_of(ann) == ("active", "")

    out = run()
    assert "1  closed as lost" in out and "Repaired." in out
    assert state_of(ann) == ("closed", "lost")
    assert "agree; nothing to do" in run()


def test_a_stray_active_entry_without_its_session_frees_the_seat(gate):
    ann, _ben, cat = open_for("ann", "ben", "cat")
    gate.client.delete(gate.keys.session(ann))  # the hash only: ann's seat stays taken
    assert gate.counts()["active"] == 2 and gate.session_info(cat).state == "queued"

    out = run()
    assert "removed stray queue/active entries" in out and "promoted 1" in out
    assert gate.counts()["active"] == 2
    assert gate.session_info(cat).state == "active"
    assert state_of(ann) == ("closed", "lost")
    assert state_of(cat)[0] == "active"


def test_a_redis_session_with_no_record_gets_one(gate):
    _ann, _ben, cat = open_for("ann", "ben", "cat")
    ChatSession.objects.filter(id=cat).delete()
    out = run()
    assert "1  recorded (in Redis, no record)" in out
    record = ChatSession.objects.get(id=cat)
    assert (record.state, record.user.username, record.opened_via) == ("queued", "cat", "api")
    assert record.ticket == gate.session_info(cat).ticket


def test_a_record_in_the_wrong_state_follows_redis(gate):
    (ann,) = open_for("ann")
    ChatSession.objects.filter(id=ann).update(state="queued")
    out = run()
    assert f"{ann}: queued -> active" in out
    assert state_of(ann) == ("active", "")


def test_a_session_of_an_unknown_person_is_ended(gate):
    ghost = gate.open("987654", via="api").session_id
    out = run()
    assert "ended (person unknown to the database)" in out and ghost in out
    assert gate.session_info(ghost) is None


def test_after_a_redis_flush_every_live_record_is_lost_and_limits_come_back(gate):
    ids = open_for("ann", "ben", "cat")
    gate.client.flushdb()
    assert gate.config() == {}
    out = run()
    assert "3  closed as lost" in out and "no live limits" in out
    assert {state_of(sid) for sid in ids} == {("closed", "lost")}
    assert gate.config()["max_active_sessions"] == 2
    # People come back to a working gate.
    again = open_for("dan", "eve", "fay")
    assert [gate.session_info(s).state for s in again] == ["active", "active", "queued"]


def test_reconcile_without_redis_is_a_command_error(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    admission.reset_manager()
    with pytest.raises(CommandError, match="Redis"):
        run()


def test_a_session_closed_while_reconcile_runs_stays_closed(gate, monkeypatch):
    """Found by the failover test (issue 11): the sweeper reconciles while people come and go.
    A seat that closes between reconcile's look at Redis and its repair must not be re-opened in
    the record ("corrected" to the state Redis had a moment ago): the record would then hold a
    seat Redis no longer has, until the next failover."""
    from sessions_app.gate import reconcile

    ann, ben, cat = open_for("ann", "ben", "cat")  # cat waits
    # The record lags behind Redis for ann (as if her activation were being written now).
    ChatSession.objects.filter(id=ann).update(state=ChatSession.State.QUEUED)
    looked = reconcile._redis_sessions

    def look_then_people_leave() -> Any:
        seen = looked()
        services.session_close(session_id=ann, reason="user")  # she leaves meanwhile
        services.session_close(session_id=ben, reason="user")  # and so does ben: cat is in
        return seen

    monkeypatch.setattr(reconcile, "_redis_sessions", look_then_people_leave)
    reconcile.sessions_reconcile()
    assert state_of(ann) == ("closed", "user")
    assert state_of(ben) == ("closed", "user")
    assert state_of(cat)[0] == "active"
