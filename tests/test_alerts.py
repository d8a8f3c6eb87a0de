"""Alerts against a real Redis: raised after their hold time, resolved when the condition
clears, each step audited and mailed to staff; Redis down raises its own alert and leaves
the others alone; the console shows the raised ones as a banner."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from sessions_app import metrics
from sessions_app.alerts import alert_thresholds_set, alerts_evaluate, alerts_raised
from sessions_app.gate import services
from sessions_app.gate.admission import AdmissionManager
from sessions_app.gate.keys import RedisKeys
from sessions_app.models import Alert, AuditEvent, ChatSession

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser(
        username="lead", email="lead@example.org", password="pw"
    )
    get_user_model().objects.create_user(username="nomail", is_staff=True)  # no address
    return user


def queue_people(n_active: int, n_queued: int) -> list[str]:
    services.limits_set(actor=None, max_active_sessions=n_active)
    ids = []
    for index in range(n_active + n_queued):
        user = get_user_model().objects.create_user(username=f"p{index}")
        ids.append(services.session_open(user=user, via="api").session_id)
    return ids


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def test_queue_alert_waits_its_minutes_then_raises_and_resolves(staff) -> None:
    alert_thresholds_set(actor=staff, queue_length=2, queue_minutes=3)
    ids = queue_people(1, 3)  # three waiting, threshold two
    start = timezone.now()

    assert alerts_evaluate(now=start).raised == []  # pending: not yet three minutes
    assert alerts_evaluate(now=start + timedelta(minutes=2)).raised == []
    assert mail.outbox == []
    result = alerts_evaluate(now=start + timedelta(minutes=3, seconds=1))
    assert [a.kind for a in result.raised] == [Alert.Kind.QUEUE]
    assert [a.kind for a in alerts_raised()] == [Alert.Kind.QUEUE]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["lead@example.org"]
    assert "3" in mail.outbox[0].body
    assert "alert.raise" in audit_actions()

    # Evaluating again while it holds tells nobody twice.
    assert alerts_evaluate(now=start + timedelta(minutes=4)).raised == []
    assert len(mail.outbox) == 1

    for session_id in ids[1:3]:
        services.session_close(session_id=session_id, reason=ChatSession.Reason.USER)
    result = alerts_evaluate(now=start + timedelta(minutes=5))
    assert [a.kind for a in result.resolved] == [Alert.Kind.QUEUE]
    assert alerts_raised() == []
    assert len(mail.outbox) == 2
    assert audit_actions()[-1] == "alert.resolve"


def test_a_queue_that_shrinks_before_its_time_is_never_raised(staff) -> None:
    alert_thresholds_set(actor=staff, queue_length=1, queue_minutes=5)
    ids = queue_people(1, 2)
    start = timezone.now()
    alerts_evaluate(now=start)
    services.session_close(session_id=ids[2], reason=ChatSession.Reason.USER)
    services.session_close(session_id=ids[1], reason=ChatSession.Reason.USER)
    alerts_evaluate(now=start + timedelta(minutes=6))
    assert Alert.objects.count() == 0
    assert mail.outbox == []
    assert "alert.raise" not in audit_actions()


def test_generation_errors_above_threshold_raise_at_once(staff) -> None:
    alert_thresholds_set(actor=staff, errors_per_minute=2)
    metrics.chat_event("backend_errors", amount=2)
    assert alerts_evaluate().raised == []  # two is not above two
    metrics.chat_event("backend_errors")
    assert [a.kind for a in alerts_evaluate().raised] == [Alert.Kind.ERRORS]
    # Switching the alert off resolves it.
    alert_thresholds_set(actor=staff, errors_per_minute=0)
    assert [a.kind for a in alerts_evaluate().resolved] == [Alert.Kind.ERRORS]


def test_redis_down_raises_its_alert_and_freezes_the_others(staff) -> None:
    alert_thresholds_set(actor=staff, queue_length=1, queue_minutes=1)
    queue_people(1, 2)
    start = timezone.now()
    alerts_evaluate(now=start)
    assert Alert.objects.get(kind=Alert.Kind.QUEUE).raised_at is None  # pending

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = AdmissionManager(
        redis.Redis(port=port, socket_connect_timeout=0.2), RedisKeys(f"x{uuid.uuid4().hex[:6]}")
    )
    result = alerts_evaluate(now=start + timedelta(minutes=2), manager=dead)
    assert [a.kind for a in result.raised] == [Alert.Kind.REDIS]
    assert Alert.objects.get(kind=Alert.Kind.QUEUE).raised_at is None  # not judged blind

    result = alerts_evaluate(now=start + timedelta(minutes=3))
    assert [a.kind for a in result.resolved] == [Alert.Kind.REDIS]
    assert [a.kind for a in result.raised] == [Alert.Kind.QUEUE]


def test_console_shows_raised_alerts_and_the_thresholds_page(staff) -> None:
    alert_thresholds_set(actor=staff, errors_per_minute=1)
    metrics.chat_event("backend_errors", amount=5)
    alerts_evaluate()
    client = Client()
    client.force_login(staff)
    page = client.get("/console/").content.decode()
    assert 'data-alert="errors"' in page
    assert "console-alerts" in page

    response = client.get("/console/alerts/")
    assert response.status_code == 200
    response = client.post(
        "/console/alerts/",
        {"queue_length": "30", "queue_minutes": "0", "wait_p90_seconds": "0",
         "errors_per_minute": "1", "redis_down": "on"},
    )  # fmt: skip
    assert response.status_code == 400  # zero minutes is refused
    response = client.post(
        "/console/alerts/",
        {"queue_length": "30", "queue_minutes": "10", "wait_p90_seconds": "600",
         "errors_per_minute": "1", "redis_down": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    assert audit_actions()[-1] == "alerts.thresholds"

    viewer = get_user_model().objects.create_user(username="viewer", is_staff=True)
    client.force_login(viewer)
    assert client.get("/console/alerts/").status_code == 200
    assert client.post("/console/alerts/", {"queue_length": "1"}).status_code == 403


def test_the_sweeper_loop_raises_and_mails(staff, tmp_path) -> None:
    """The real `sweep_sessions --loop` process evaluates the alerts: raised, audited, and the
    mail printed by the default console backend."""
    import subprocess
    import sys
    import time

    from tests.live import ROOT, server_env

    alert_thresholds_set(actor=staff, errors_per_minute=1)
    metrics.chat_event("backend_errors", amount=3)
    log = tmp_path / "sweeper.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "sweep_sessions", "--loop", "--interval", "0.2"],
            cwd=ROOT,
            env=server_env(EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not alerts_raised():
                time.sleep(0.2)
            time.sleep(0.5)  # the mail is written right after the row
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert [a.kind for a in alerts_raised()] == [Alert.Kind.ERRORS]
    assert AuditEvent.objects.filter(action="alert.raise", target="errors").exists()
    text = log.read_text(errors="replace")
    assert "lead@example.org" in text, text[-2000:]


def test_evaluators_racing_tell_staff_once(staff) -> None:
    """Several sweepers (here: six threads, each with its own database connection) finding the
    same pending alert due at the same moment raise it once and send one mail."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    alert_thresholds_set(actor=staff, queue_length=1, queue_minutes=1)
    queue_people(1, 2)
    start = timezone.now()
    alerts_evaluate(now=start)  # pending
    due = start + timedelta(minutes=2)

    def evaluate(_: int) -> int:
        try:
            return len(alerts_evaluate(now=due).raised)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        raised = sum(pool.map(evaluate, range(6)))
    assert raised == 1
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(action="alert.raise").count() == 1
