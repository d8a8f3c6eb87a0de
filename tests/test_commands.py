"""Every operator command's output and its CommandError cases, against a real Redis."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from sessions_app.gate import admission, services
from sessions_app.gate.admission import get_manager
from sessions_app.management.commands.queue_status import CLEAR
from sessions_app.models import ApiToken, AuditEvent, ChatSession, GateSettings, hash_token
from tests.live import ROOT, as_from_a_terminal, server_env

pytestmark = pytest.mark.django_db


def run(*args: Any, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def person(name: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username=name, **extra)


def open_for(*names: str) -> list[str]:
    return [services.session_open(user=person(n), via="api").session_id for n in names]


@pytest.fixture
def limit_two() -> None:
    get_manager().set_limits({"max_active_sessions": 2})


@pytest.fixture
def redis_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    admission.reset_manager()


# --- queue_status ------------------------------------------------------------------------------


def test_queue_status_table_shows_counts_active_and_queue_positions(limit_two):
    open_for("ann", "ben", "cat", "dan")
    out = run("queue_status")
    assert "active 2/2" in out and "queued 2" in out and "generating 0/10" in out
    lines = out.splitlines()
    assert any(line.strip().startswith("ann") for line in lines)
    queue_rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [(row[0], row[1]) for row in queue_rows] == [("1", "cat"), ("2", "dan")]


def test_queue_status_json(limit_two):
    ids = open_for("ann", "ben", "cat")
    data = json.loads(run("queue_status", "--json"))
    assert data["gate"]["active"] == 2 and data["gate"]["max_active_sessions"] == 2
    assert [e["session_id"] for e in data["queue"]] == [ids[2]]
    assert {e["username"] for e in data["active"]} == {"ann", "ben"}


def test_queue_status_watch_redraws_until_stopped(limit_two):
    open_for("ann")
    out = run("queue_status", "--watch", "--count", "3", "--interval", "0.01")
    assert out.count(CLEAR) == 3
    assert "Ctrl-C stops" in out and "active 1/2" in out


def test_queue_status_watch_survives_redis_going_away(redis_down):
    out = run("queue_status", "--watch", "--count", "2", "--interval", "0.01")
    assert out.count("Redis unreachable, retrying") == 2


def test_queue_status_without_redis_is_a_command_error(redis_down):
    with pytest.raises(CommandError, match="REDIS_URL"):
        run("queue_status")


def test_queue_status_rejects_bad_arguments():
    with pytest.raises(CommandError, match="--limit"):
        run("queue_status", "--limit", "0")
    with pytest.raises(CommandError, match="--interval"):
        run("queue_status", "--watch", "--interval", "0")


# --- close_session / promote / remove_from_queue -----------------------------------------------


def test_close_session_by_username_promotes_and_records_staff_reason(limit_two):
    ann, _ben, cat = open_for("ann", "ben", "cat")
    out = run("close_session", "ann", "--reason", "maintenance")
    assert f"Closed ann's active session {ann}; promoted 1 from the queue." in out
    record = ChatSession.objects.get(id=ann)
    assert (record.state, record.close_reason, record.close_note) == (
        "closed",
        "admin",
        "maintenance",
    )
    assert get_manager().session_info(cat).state == "active"
    event = AuditEvent.objects.get(action="session.close")
    assert "manage.py close_session" in event.actor_label and event.target == ann


def test_close_session_by_session_id():
    (sid,) = open_for("ann")
    assert "Closed ann's active session" in run("close_session", sid)
    assert (
        get_manager().session_of_user(str(get_user_model().objects.get(username="ann").pk)) is None
    )


def test_close_session_errors_name_what_is_wrong(redis_down):
    person("ann")
    with pytest.raises(CommandError, match="REDIS_URL"):
        run("close_session", "ann")


def test_close_session_unknown_person_or_no_live_session():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("close_session", "ghost")
    person("idle")
    with pytest.raises(CommandError, match="idle has no live session"):
        run("close_session", "idle")
    with pytest.raises(CommandError, match="is not live"):
        run("close_session", "00000000-0000-4000-8000-000000000000")


def test_promote_admits_above_the_limit_and_says_so(limit_two):
    *_rest, dan = open_for("ann", "ben", "cat", "dan")
    out = run("promote", "dan")
    assert "Admitted dan now (above the active limit)." in out
    assert get_manager().session_info(dan).over_limit is True
    assert ChatSession.objects.get(id=dan).admitted_over_limit is True


def test_promote_front_moves_to_the_head(limit_two):
    *_rest, cat, dan = open_for("ann", "ben", "cat", "dan")
    assert "Moved dan to the front" in run("promote", dan, "--front")
    assert get_manager().queue_order() == [dan, cat]


def test_promote_refuses_an_active_session(limit_two):
    open_for("ann")
    with pytest.raises(CommandError, match="is active, not queued"):
        run("promote", "ann")


def test_remove_from_queue_frees_the_place_and_refuses_active_people(limit_two):
    *_rest, cat, dan = open_for("ann", "ben", "cat", "dan")
    assert "Removed cat from the queue." in run("remove_from_queue", "cat")
    assert get_manager().queue_order() == [dan]
    assert ChatSession.objects.get(id=cat).close_reason == "admin"
    with pytest.raises(CommandError, match=r"use `manage\.py close_session`"):
        run("remove_from_queue", "ann")
    with pytest.raises(CommandError, match="No user named"):
        run("remove_from_queue", "zed")


# --- set_limits --------------------------------------------------------------------------------


def test_set_limits_applies_at_once_and_promotes(django_capture_on_commit_callbacks):
    get_manager().set_limits({"max_active_sessions": 1})
    GateSettings.objects.update_or_create(pk=1, defaults={"max_active_sessions": 1})
    _ann, ben, cat = open_for("ann", "ben", "cat")
    with django_capture_on_commit_callbacks(execute=True):
        out = run("set_limits", "--max-active", "3", "--idle-timeout", "600", "--banner", "hi")
    assert "max active 3" in out and "idle timeout 600s" in out and "banner 'hi'" in out
    live = get_manager().config()
    assert live["max_active_sessions"] == 3 and live["idle_timeout_seconds"] == 600
    assert {get_manager().session_info(s).state for s in (ben, cat)} == {"active"}
    assert "manage.py set_limits" in AuditEvent.objects.get(action="limits.set").actor_label


def test_set_limits_pause_and_resume(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert "admissions paused" in run("set_limits", "--pause")
    assert get_manager().config()["admissions_paused"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert "admissions open" in run("set_limits", "--resume")
    assert get_manager().config()["admissions_paused"] == 0


def test_set_limits_errors():
    with pytest.raises(CommandError, match="Nothing to change"):
        run("set_limits")
    with pytest.raises(CommandError, match="max_active_sessions"):
        run("set_limits", "--max-active", "0")
    with pytest.raises(CommandError):
        run("set_limits", "--pause", "--resume")


# --- create_api_token --------------------------------------------------------------------------


def test_create_api_token_prints_it_once_and_stores_only_the_hash():
    person("root", is_superuser=True, is_staff=True)
    out = run("create_api_token", "billing", "--act-for-users")
    raw = out.strip().splitlines()[-1]
    assert raw.startswith("cg_")
    row = ApiToken.objects.get(name="billing")
    assert row.token_hash == hash_token(raw) and raw not in row.token_hash
    assert row.can_act_for_users and row.owner.username == "root"
    assert "acts for any user_id" in out


def test_create_api_token_for_a_named_owner_acts_only_for_them():
    person("svc")
    out = run("create_api_token", "bot", "--owner", "svc")
    assert "acts for only svc" in out
    assert ApiToken.objects.get(name="bot").can_act_for_users is False


def test_create_api_token_errors():
    with pytest.raises(CommandError, match="No superuser"):
        run("create_api_token", "first")
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("create_api_token", "x", "--owner", "nobody")
    person("svc")
    run("create_api_token", "dup", "--owner", "svc")
    with pytest.raises(CommandError, match="already exists"):
        run("create_api_token", "dup", "--owner", "svc")


def test_queue_status_watch_stops_cleanly_on_ctrl_c(transactional_db, tmp_path):
    """The real thing: a separate process, a real SIGINT, no traceback, exit status 0."""
    out_path = tmp_path / "watch.out"
    with out_path.open("wb") as out, (tmp_path / "watch.err").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "queue_status", "--watch", "--interval", "0.2"],
            cwd=ROOT,
            env=server_env(),
            stdout=out,
            stderr=err,
            preexec_fn=as_from_a_terminal,  # the SIGINT below must reach it as Ctrl-C
        )
        try:
            deadline = time.monotonic() + 30
            while out_path.read_text().count(CLEAR) < 2 and time.monotonic() < deadline:
                assert process.poll() is None, (tmp_path / "watch.err").read_text()
                time.sleep(0.1)
            assert out_path.read_text().count(CLEAR) >= 2, "no redraws within 30 s"
            process.send_signal(signal.SIGINT)
            try:
                assert process.wait(timeout=10) == 0
            except subprocess.TimeoutExpired:
                status = Path(f"/proc/{process.pid}/status").read_text()
                raise AssertionError(
                    "still running 10 s after SIGINT; its signal masks:\n"
                    + "\n".join(line for line in status.splitlines() if line.startswith("Sig"))
                ) from None
        finally:
            if process.poll() is None:
                process.kill()
    assert "Traceback" not in (tmp_path / "watch.err").read_text()
    assert "active 0/" in out_path.read_text()
