"""CSV exports: the command writes exactly the range asked for; the admin action downloads
the selection; formula-looking cells are defused."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from sessions_app.gate import services
from sessions_app.models import AuditEvent, ChatSession

pytestmark = pytest.mark.django_db(transaction=True)


def make_sessions() -> None:
    now = timezone.now()
    for index, days in enumerate((40, 10, 1)):
        user = get_user_model().objects.create_user(
            username=f"=cmd{index}" if index == 2 else f"u{index}"
        )
        ChatSession.objects.create(
            user=user,
            state=ChatSession.State.CLOSED,
            created_at=now - timedelta(days=days),
            activated_at=now - timedelta(days=days) + timedelta(seconds=30),
            closed_at=now - timedelta(days=days) + timedelta(minutes=5),
            close_reason=ChatSession.Reason.EXPIRED,
        )


def test_export_command_writes_the_range(tmp_path: Path) -> None:
    make_sessions()
    since = (timezone.localdate() - timedelta(days=20)).isoformat()
    out = tmp_path / "s.csv"
    call_command("export_records", "sessions", "--since", since, "--output", str(out))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(r["username"] for r in rows) == ["'=cmd2", "u1"]
    assert {r["close_reason"] for r in rows} == {"expired"}
    assert {r["waited_seconds"] for r in rows} == {"30.0"}

    services.audit(actor=None, action="limits.set", target="gate", detail={"max": [20, 30]})
    buffer = io.StringIO()
    call_command("export_records", "audit", stdout=buffer, stderr=io.StringIO())
    audit = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert [r["action"] for r in audit] == ["limits.set"]

    with pytest.raises(CommandError):
        call_command("export_records", "sessions", "--since", "yesterday")
    with pytest.raises(CommandError):
        call_command("export_records", "audit", "--since", "2026-12-01", "--until", "2026-11-01")


def test_admin_export_action_downloads_the_selection() -> None:
    make_sessions()
    staff = get_user_model().objects.create_superuser(username="lead", password="pw")
    client = Client()
    client.force_login(staff)
    chosen = list(ChatSession.objects.values_list("pk", flat=True)[:2])
    response = client.post(
        "/admin/sessions_app/chatsession/",
        {"action": "export_csv", "_selected_action": [str(pk) for pk in chosen]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert sorted(r["id"] for r in rows) == sorted(str(pk) for pk in chosen)

    AuditEvent.objects.create(actor_label="lead", action="session.close", target="x")
    response = client.post(
        "/admin/sessions_app/auditevent/",
        {"action": "export_csv", "_selected_action": [str(AuditEvent.objects.get().pk)]},
    )
    assert "session.close" in response.content.decode("utf-8-sig")
