"""The console in real Chromium against a real daphne: a force-close shows up live, no reload.

Two tabs of one staff member: the first watches the console and is never reloaded; the second
goes through the force-close confirm → act → redirect. The watching tab must show the person
leaving the active table and the queue's head moving into it. Screenshots go to artifacts/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import translation

from sessions_app.gate import services
from sessions_app.models import AuditEvent, ChatSession
from tests.live import DaphneServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("orm_beside_playwright"),
]


def staff_cookie(server: DaphneServer) -> dict[str, Any]:
    user = get_user_model().objects.create_user(
        username="operator", password="pw-123456!", is_staff=True
    )
    user.user_permissions.add(
        Permission.objects.get(codename="steer_gate", content_type__app_label="sessions_app")
    )
    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}


def open_for(username: str) -> str:
    user = get_user_model().objects.create_user(username=username, password=None)
    return services.session_open(user=user, via="api").session_id


def test_force_close_updates_both_tables_live(
    daphne_server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    services.limits_set(actor=None, max_active_sessions=1)
    alice = open_for("alice")
    bob = open_for("bob")
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.add_cookies([staff_cookie(daphne_server)])
    try:
        watcher = context.new_page()
        watcher.goto(f"{daphne_server.url}/console/")
        watcher.wait_for_selector("#console-link-state[data-state=live]", timeout=10_000)
        assert watcher.locator(f'#active-table tr[data-session="{alice}"]').count() == 1
        assert watcher.locator(f'#queue-table tr[data-session="{bob}"]').count() == 1
        watcher.evaluate("window.__neverReloaded = 42")
        watcher.screenshot(path=str(artifacts_dir / "console_before_close.png"), full_page=True)

        actor = context.new_page()
        actor.goto(f"{daphne_server.url}/console/")
        actor.click(f'#active-table tr[data-session="{alice}"] a.button.danger')
        actor.wait_for_selector("form.console-confirm textarea[name=note]")
        actor.fill("textarea[name=note]", "Maintenance: back in ten minutes.")
        actor.screenshot(path=str(artifacts_dir / "console_confirm_close.png"), full_page=True)
        actor.click("form.console-confirm input[type=submit]")
        actor.wait_for_url(f"{daphne_server.url}/console/")
        assert "alice's session was closed." in actor.locator("ul.messagelist").inner_text().lower()

        # The watching tab, untouched: alice leaves, bob moves from the queue to the active table.
        watcher.wait_for_selector(
            f'#active-table tr[data-session="{alice}"]', state="detached", timeout=5_000
        )
        watcher.wait_for_selector(f'#active-table tr[data-session="{bob}"]', timeout=5_000)
        assert watcher.locator(f'#console-queue tr[data-session="{bob}"]').count() == 0
        assert "Nobody is waiting." in watcher.locator("#console-queue").inner_text()
        assert watcher.evaluate("window.__neverReloaded") == 42
        audit = watcher.locator('#audit-table tr[data-action="session.close"]')
        audit.first.wait_for(timeout=5_000)
        assert "operator" in audit.first.inner_text()
        watcher.screenshot(path=str(artifacts_dir / "console_after_close.png"), full_page=True)
    finally:
        context.close()

    record = ChatSession.objects.get(pk=alice)
    assert (record.close_reason, record.close_note) == (
        "admin",
        "Maintenance: back in ten minutes.",
    )
    assert AuditEvent.objects.filter(action="session.close", target=alice).exists()


def test_console_in_korean(daphne_server: DaphneServer, browser: Any, artifacts_dir: Path) -> None:
    open_for("민지")
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ko-KR")
    context.add_cookies([staff_cookie(daphne_server)])
    try:
        page = context.new_page()
        page.goto(f"{daphne_server.url}/console/")
        page.wait_for_selector("#console-link-state[data-state=live]", timeout=10_000)
        assert page.locator("#console-link-state").inner_text() == "실시간"
        with translation.override("ko"):
            heading = translation.gettext("Active sessions")
        assert heading != "Active sessions"  # a Korean catalogue applies (app or project level)
        assert heading in page.locator("#console-active h2").inner_text()
        assert "게이트 콘솔" in page.locator("h1").inner_text()
        assert "민지" in page.locator("#active-table").inner_text()
        page.screenshot(path=str(artifacts_dir / "console_ko.png"), full_page=True)
    finally:
        context.close()


def test_console_falls_back_to_polling_when_websockets_are_blocked(
    daphne_server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    context.add_cookies([staff_cookie(daphne_server)])
    try:
        page = context.new_page()
        # Every attempt to open the console socket is refused, as by a proxy without WebSockets.
        page.route_web_socket("**/ws/console/", lambda ws: ws.close())
        page.goto(f"{daphne_server.url}/console/")
        page.wait_for_selector("#console-link-state[data-state=polling]", timeout=15_000)
        carol = open_for("carol")
        page.wait_for_selector(f'#active-table tr[data-session="{carol}"]', timeout=12_000)
        page.screenshot(path=str(artifacts_dir / "console_polling.png"), full_page=True)
    finally:
        context.close()
