"""The Django admin: read-only records, actions through the same services, links to the console."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ApiToken, AuditEvent, ChatSession, GateSettings, hash_token

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "/admin/sessions_app/chatsession/"


@pytest.fixture
def admin_user() -> Any:
    return get_user_model().objects.create_superuser(username="root", password="pw-123456!")


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def open_for(username: str) -> str:
    user = get_user_model().objects.create_user(username=username, password=None)
    return services.session_open(user=user, via="api").session_id


def test_admin_links_to_the_console_and_back(admin_client: Client) -> None:
    index = admin_client.get("/admin/").content.decode()
    assert f'href="{reverse("console")}"' in index
    console = admin_client.get("/console/").content.decode()
    assert f'href="{reverse("admin:index")}"' in console
    assert f'href="{CHANGELIST}"' in console


def test_sessions_filter_by_state_and_reason_and_search_by_person(admin_client: Client) -> None:
    alice = open_for("alice")
    open_for("bob")
    services.session_close(session_id=alice, reason="admin", actor=None)
    page = admin_client.get(CHANGELIST, {"state__exact": "closed", "close_reason__exact": "admin"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "alice" in html and ">bob<" not in html
    for action in ("force_close", "admit_now", "move_to_front"):
        assert f'value="{action}"' in html
    found = admin_client.get(CHANGELIST, {"q": "bob"}).content.decode()
    assert "bob" in found and "alice" not in found


def test_force_close_action_confirms_then_calls_the_service(admin_client: Client) -> None:
    sid = open_for("alice")
    post = {"action": "force_close", ACTION_CHECKBOX_NAME: [sid]}
    confirm = admin_client.post(CHANGELIST, post)
    assert confirm.status_code == 200
    assert "Close these sessions now?" in confirm.content.decode()
    assert get_manager().session_info(sid) is not None  # nothing yet

    done = admin_client.post(
        CHANGELIST, {**post, "confirm": "yes", "note": "Back at noon."}, follow=True
    )
    assert "1 session(s) closed." in done.content.decode()
    assert get_manager().session_info(sid) is None
    record = ChatSession.objects.get(pk=sid)
    assert (record.close_reason, record.close_note) == ("admin", "Back at noon.")
    assert AuditEvent.objects.filter(action="session.close", target=sid).exists()


def test_admit_now_and_move_to_front_actions(admin_client: Client) -> None:
    services.limits_set(actor=None, max_active_sessions=1)
    open_for("alice")
    bob, carol = open_for("bob"), open_for("carol")
    admin_client.post(
        CHANGELIST, {"action": "move_to_front", ACTION_CHECKBOX_NAME: [carol], "confirm": "yes"}
    )
    assert get_manager().position(carol) == 1
    assert AuditEvent.objects.filter(action="session.front", target=carol).exists()

    admin_client.post(
        CHANGELIST, {"action": "admit_now", ACTION_CHECKBOX_NAME: [bob], "confirm": "yes"}
    )
    info = get_manager().session_info(bob)
    assert info is not None and info.state == "active" and info.over_limit
    assert AuditEvent.objects.filter(action="session.admit", target=bob).exists()


def test_staff_without_steer_gate_see_sessions_but_no_actions() -> None:
    viewer = get_user_model().objects.create_user(
        username="viewer", password="pw-123456!", is_staff=True
    )
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_chatsession", content_type__app_label="sessions_app")
    )
    client = Client()
    client.force_login(viewer)
    sid = open_for("alice")
    page = client.get(CHANGELIST).content.decode()
    assert "alice" in page
    assert 'value="force_close"' not in page
    client.post(
        CHANGELIST, {"action": "force_close", ACTION_CHECKBOX_NAME: [sid], "confirm": "yes"}
    )
    assert get_manager().session_info(sid) is not None


def test_records_are_read_only(admin_client: Client) -> None:
    sid = open_for("alice")
    assert admin_client.get("/admin/sessions_app/chatsession/add/").status_code == 403
    assert admin_client.get("/admin/sessions_app/chatmessage/add/").status_code == 403
    assert admin_client.get("/admin/sessions_app/auditevent/add/").status_code == 403
    change = admin_client.get(f"/admin/sessions_app/chatsession/{sid}/change/")
    assert change.status_code == 200  # view only
    assert reverse("console-close", args=[sid]) in change.content.decode()
    assert admin_client.post(f"/admin/sessions_app/chatsession/{sid}/delete/").status_code == 403


def test_gate_settings_save_through_the_service(admin_client: Client) -> None:
    gate = GateSettings.load()
    url = f"/admin/sessions_app/gatesettings/{gate.pk}/change/"
    assert admin_client.get("/admin/sessions_app/gatesettings/")["Location"] == url
    data = {
        "max_active_sessions": 7,
        "max_concurrent_queries": gate.max_concurrent_queries,
        "idle_timeout_seconds": gate.idle_timeout_seconds,
        "disconnect_grace_seconds": gate.disconnect_grace_seconds,
        "query_wait_timeout_seconds": gate.query_wait_timeout_seconds,
        "banner_message": "",
    }
    assert admin_client.post(url, data).status_code == 302
    assert get_manager().config()["max_active_sessions"] == 7
    assert AuditEvent.objects.get(action="limits.set").detail["after"] == {"max_active_sessions": 7}
    bad = admin_client.post(url, {**data, "max_active_sessions": 0})
    assert bad.status_code == 200
    assert "greater than or equal to 1" in bad.content.decode()
    assert get_manager().config()["max_active_sessions"] == 7


def test_api_token_is_shown_once_and_only_its_hash_kept(
    admin_client: Client, admin_user: Any
) -> None:
    response = admin_client.post(
        "/admin/sessions_app/apitoken/add/",
        {"name": "batch", "owner": admin_user.pk, "can_act_for_users": "on"},
        follow=True,
    )
    html = response.content.decode()
    token = ApiToken.objects.get(name="batch")
    raw = html.split("only its hash is kept: ")[1].split("<")[0].strip()
    assert raw.startswith("cg_") and token.token_hash == hash_token(raw)
    assert (
        raw
        not in admin_client.get(f"/admin/sessions_app/apitoken/{token.pk}/change/").content.decode()
    )
    assert AuditEvent.objects.filter(action="token.issue", target="batch").exists()

    admin_client.post(
        "/admin/sessions_app/apitoken/", {"action": "revoke", ACTION_CHECKBOX_NAME: [token.pk]}
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke", target="batch").exists()
