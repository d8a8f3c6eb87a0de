"""The staff console's HTTP side: who may see it, and every action's confirm → act → audit.

Each action test asserts the state it names changed in Redis (the live truth) and in the SQL
record, and that an audit row was written. Transactional: services notify and push limits
to Redis on commit, which a rolled-back test transaction would never reach.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import translation

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import AuditEvent, ChatSession, GateSettings

pytestmark = pytest.mark.django_db(transaction=True)


def make_user(username: str, *, staff: bool = False, steer: bool = False) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password="pw-123456!", is_staff=staff
    )
    if steer:
        user.user_permissions.add(
            Permission.objects.get(codename="steer_gate", content_type__app_label="sessions_app")
        )
    return get_user_model().objects.get(pk=user.pk)  # fresh: no cached permissions


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def steerer() -> Any:
    return make_user("steerer", staff=True, steer=True)


@pytest.fixture
def staff_client(steerer: Any) -> Client:
    return client_for(steerer)


@pytest.fixture
def gate_of_one() -> None:
    """One seat, so that the second person queues."""
    services.limits_set(actor=None, max_active_sessions=1)
    assert get_manager().config()["max_active_sessions"] == 1


def open_for(username: str) -> tuple[Any, str, str]:
    user = make_user(username)
    outcome = services.session_open(user=user)
    return user, outcome.session_id, outcome.state


# --- who may see it --------------------------------------------------------------------------


def test_not_logged_in_gets_the_login_page() -> None:
    response = Client().get("/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/console/")


def test_logged_in_non_staff_get_403_everywhere() -> None:
    person = make_user("person")
    _u, sid, _state = open_for("someone")
    client = client_for(person)
    for url in (
        "/console/",
        reverse("console-close", args=[sid]),
        reverse("console-admit", args=[sid]),
        reverse("console-limits"),
        reverse("console-pause"),
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("console-close", args=[sid])).status_code == 403
    live = client.get(reverse("console-live"))
    assert live.status_code == 403
    assert live["Content-Type"] == "application/json"
    assert live.json()["error"]["code"] == "forbidden"
    assert get_manager().session_info(sid) is not None  # nothing happened


def test_live_json_refuses_anonymous_with_json_401_not_a_redirect() -> None:
    response = Client().get(reverse("console-live"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_staff_without_steer_permission_may_look_but_not_act() -> None:
    viewer = client_for(make_user("viewer", staff=True))
    _u, sid, _state = open_for("alice")
    page = viewer.get("/console/")
    assert page.status_code == 200
    assert "alice" in page.content.decode()
    assert reverse("console-close", args=[sid]) not in page.content.decode()
    assert viewer.get(reverse("console-close", args=[sid])).status_code == 403
    assert viewer.post(reverse("console-close", args=[sid])).status_code == 403
    assert get_manager().session_info(sid) is not None


def test_console_shows_gauges_tables_charts_and_wears_the_admin(staff_client: Client) -> None:
    _u, sid, state = open_for("alice")
    assert state == "active"
    response = staff_client.get("/console/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    assert 'id="site-name"' in html  # admin/base_site.html
    assert reverse("admin:index") in html  # breadcrumbs back to the admin
    assert f'data-session="{sid}"' in html
    assert reverse("admin:sessions_app_chatsession_change", args=[sid]) in html  # the record
    assert html.count('<svg class="chart"') == 4
    assert 'data-gauge="active"' in html


def test_live_json_returns_the_fragments(staff_client: Client) -> None:
    open_for("alice")
    data = staff_client.get(reverse("console-live")).json()
    assert data["type"] == "console.update"
    assert set(data["fragments"]) == {"gauges", "active", "queue", "audit", "charts"}
    assert "alice" in data["fragments"]["active"]


# --- acting ------------------------------------------------------------------------------------


def test_force_close_confirms_then_closes_with_the_note(staff_client: Client) -> None:
    _u, sid, _state = open_for("alice")
    url = reverse("console-close", args=[sid])
    confirm = staff_client.get(url)
    assert confirm.status_code == 200
    assert "alice" in confirm.content.decode()
    assert get_manager().session_info(sid) is not None  # GET changes nothing

    response = staff_client.post(url, {"note": "Maintenance at 10:00."}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("console")
    assert "session was closed" in response.content.decode()
    assert get_manager().session_info(sid) is None
    record = ChatSession.objects.get(pk=sid)
    assert (record.state, record.close_reason, record.close_note) == (
        "closed",
        "admin",
        "Maintenance at 10:00.",
    )
    event = AuditEvent.objects.get(action="session.close")
    assert event.target == sid and event.actor_label == "steerer"
    assert event.detail["note"] == "Maintenance at 10:00."


def test_csrf_is_required_for_actions(steerer: Any) -> None:
    _u, sid, _state = open_for("alice")
    client = Client(enforce_csrf_checks=True)
    client.force_login(steerer)
    response = client.post(reverse("console-close", args=[sid]), {"note": "x"})
    assert response.status_code == 403
    assert get_manager().session_info(sid) is not None


def test_admit_now_over_the_limit_is_labelled_and_audited(
    staff_client: Client, gate_of_one: None
) -> None:
    open_for("alice")
    _b, bob, state = open_for("bob")
    assert state == "queued"
    confirm = staff_client.get(reverse("console-admit", args=[bob])).content.decode()
    assert "over the limit" in confirm

    response = staff_client.post(reverse("console-admit", args=[bob]), follow=True)
    assert "admitted now, over the limit" in response.content.decode()
    info = get_manager().session_info(bob)
    assert info is not None and info.state == "active" and info.over_limit
    assert ChatSession.objects.get(pk=bob).admitted_over_limit
    assert get_manager().counts()["active"] == 2
    assert AuditEvent.objects.filter(action="session.admit", target=bob).exists()
    page = staff_client.get("/console/").content.decode()
    assert "over limit" in page


def test_move_to_front(staff_client: Client, gate_of_one: None) -> None:
    open_for("alice")
    _b, bob, _s = open_for("bob")
    _c, carol, _s = open_for("carol")
    assert get_manager().position(carol) == 2
    staff_client.post(reverse("console-front", args=[carol]))
    assert get_manager().position(carol) == 1
    assert get_manager().position(bob) == 2
    assert AuditEvent.objects.filter(action="session.front", target=carol).exists()


def test_remove_from_queue(staff_client: Client, gate_of_one: None) -> None:
    open_for("alice")
    _b, bob, _s = open_for("bob")
    confirm = staff_client.get(reverse("console-remove", args=[bob])).content.decode()
    assert "Remove" in confirm
    response = staff_client.post(reverse("console-remove", args=[bob]), follow=True)
    assert "removed from the queue" in response.content.decode()
    assert get_manager().position(bob) == 0
    assert get_manager().session_info(bob) is None
    assert ChatSession.objects.get(pk=bob).close_reason == "admin"
    assert AuditEvent.objects.filter(action="session.close", target=bob).exists()


def test_pause_and_resume(staff_client: Client, gate_of_one: None) -> None:
    assert staff_client.get(reverse("console-pause")).status_code == 200
    staff_client.post(reverse("console-pause"))
    assert get_manager().config()["admissions_paused"] == 1
    _a, alice, state = open_for("alice")
    assert state == "queued"  # drained: nobody new becomes active

    response = staff_client.post(reverse("console-resume"), follow=True)
    assert "resumed" in response.content.decode()
    assert get_manager().config()["admissions_paused"] == 0
    assert get_manager().session_info(alice).state == "active"  # type: ignore[union-attr]
    actions = list(AuditEvent.objects.filter(action="limits.set").values_list("detail", flat=True))
    assert {"admissions_paused": True} in [d["after"] for d in actions]
    assert {"admissions_paused": False} in [d["after"] for d in actions]


def test_change_limits_applies_at_once_and_promotes(
    staff_client: Client, gate_of_one: None
) -> None:
    open_for("alice")
    _b, bob, _s = open_for("bob")
    form = staff_client.get(reverse("console-limits")).content.decode()
    assert 'name="max_active_sessions"' in form
    gate = GateSettings.load()
    data = {name: getattr(gate, name) for name in gate.limits() if name in form}
    data.update(max_active_sessions=2, max_concurrent_queries=3)
    response = staff_client.post(reverse("console-limits"), data, follow=True)
    assert "Limits changed" in response.content.decode()
    live = get_manager().config()
    assert live["max_active_sessions"] == 2 and live["max_concurrent_queries"] == 3
    assert get_manager().session_info(bob).state == "active"  # type: ignore[union-attr]
    event = AuditEvent.objects.filter(action="limits.set").latest("created_at")
    assert event.detail["after"] == {"max_active_sessions": 2, "max_concurrent_queries": 3}
    audit = staff_client.get(reverse("console-live")).json()["fragments"]["audit"]
    assert "max_active_sessions: 1 → 2; max_concurrent_queries: 10 → 3" in audit


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_active_sessions", "0", "greater than or equal to 1"),
        ("max_concurrent_queries", "-3", "greater than or equal to 1"),
        ("idle_timeout_seconds", "99999999", "less than or equal to"),
        ("disconnect_grace_seconds", "soon", "Enter a whole number"),
    ],
)
def test_invalid_limits_show_clear_errors_and_change_nothing(
    staff_client: Client, field: str, value: str, message: str
) -> None:
    gate = GateSettings.load()
    before = get_manager().config()
    data: dict[str, Any] = {
        "max_active_sessions": gate.max_active_sessions,
        "max_concurrent_queries": gate.max_concurrent_queries,
        "idle_timeout_seconds": gate.idle_timeout_seconds,
        "disconnect_grace_seconds": gate.disconnect_grace_seconds,
        "query_wait_timeout_seconds": gate.query_wait_timeout_seconds,
    }
    data[field] = value
    response = staff_client.post(reverse("console-limits"), data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Please correct the errors below" in html
    assert message in html
    assert 'class="errorlist' in html
    assert get_manager().config() == before
    assert not AuditEvent.objects.filter(action="limits.set").exists()


def test_banner_message(staff_client: Client) -> None:
    response = staff_client.post(
        reverse("console-banner"), {"banner_message": "Maintenance tonight."}, follow=True
    )
    assert "shown to everyone waiting" in response.content.decode()
    assert GateSettings.load().banner_message == "Maintenance tonight."
    event = AuditEvent.objects.get(action="limits.set")
    assert event.detail["after"] == {"banner_message": "Maintenance tonight."}
    assert "Maintenance tonight." in staff_client.get("/console/").content.decode()
    staff_client.post(reverse("console-banner"), {"banner_message": ""})
    assert GateSettings.load().banner_message == ""


def test_audit_log_is_on_the_console(staff_client: Client) -> None:
    _u, sid, _state = open_for("alice")
    staff_client.post(reverse("console-close", args=[sid]), {"note": "bye"})
    fragments = staff_client.get(reverse("console-live")).json()["fragments"]
    assert 'data-action="session.close"' in fragments["audit"]
    assert "steerer" in fragments["audit"]
    assert f"alice ({sid[:8]})" in fragments["audit"]  # to whom, by name


def test_console_page_in_korean(staff_client: Client) -> None:
    staff_client.cookies["django_language"] = "ko"
    html = staff_client.get("/console/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert 'lang="ko"' in html
    assert "게이트 콘솔" in html  # "Gate console"
    with translation.override("ko"):
        heading = translation.gettext("Active sessions")  # the project catalogue may reword it
    assert heading != "Active sessions" and heading in html


def test_charts_draw_what_redis_holds() -> None:
    import time

    from sessions_app import metrics
    from sessions_app.console import charts

    now = time.time()
    metrics.request_record(group="api", status=200, seconds=0.02, now=now - 120)
    metrics.request_record(group="api", status=503, seconds=0.4, now=now)
    metrics.gauges_sample(active=3, queued=7, now=now - 60)
    metrics.gauges_sample(active=4, queued=2, now=now)
    series = metrics.minute_series(minutes=60, now=now)
    requests_svg = str(charts.requests_chart(series))
    assert requests_svg.count('class="series-0 bar"') == 2  # two minutes with requests
    assert requests_svg.count('class="series-2 bar"') == 1  # one with a 5xx
    sessions_svg = str(charts.sessions_chart(series))
    assert sessions_svg.count("<polyline") == 2  # active and queued, two samples each
    waits = [(now - 10, 0.0), (now - 20, 45.0), (now - 7200, 3.0)]  # the last is too old
    wait_svg = str(charts.wait_distribution_chart(waits, now=now))
    assert wait_svg.count('class="series-0 bar"') == 2
    assert "<script" not in requests_svg + sessions_svg + wait_svg


def test_console_says_redis_is_unreachable_with_503(staff_client: Client, settings: Any) -> None:
    from sessions_app.gate import admission

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    admission.reset_manager()
    try:
        page = staff_client.get("/console/")
        live = staff_client.get(reverse("console-live"))
    finally:
        admission.reset_manager()
    assert page.status_code == 503
    assert "unreachable" in page.content.decode()
    assert live.status_code == 503 and live["Retry-After"] == "5"
    assert live.json()["error"]["code"] == "unavailable"
