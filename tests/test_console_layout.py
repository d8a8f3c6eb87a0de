"""The console's layout in real Chromium, Korean and English, at 1280 px and on a 390 px phone:
nothing wider than the viewport, no table header broken one syllable per line, and on the
phone the gauges first, then the queue's head, in a short page. Screenshots go to artifacts/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from sessions_app import metrics
from sessions_app.alerts import alert_thresholds_set, alerts_evaluate
from sessions_app.gate import services
from tests.live import DaphneServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("orm_beside_playwright"),
]

# Elements sticking out of the viewport (ignoring ones the page deliberately hides).
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.right > width + 1 || box.left < -1) {
      const name = `${el.tagName.toLowerCase()}#${el.id}.${el.className}`;
      out.push(`${name} ${Math.round(box.left)}..${Math.round(box.right)}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, out: out.slice(0, 10)};
}"""

# For every visible table header: its text grouped into rendered lines (by each character's
# rectangle), reporting any line that holds a single character.
HEADER_LINES_JS = """() => {
  const bad = [];
  for (const th of document.querySelectorAll('.console-table th, .console-table .tag')) {
    if (!th.offsetParent) continue;
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    const lines = new Map();
    let node;
    while ((node = walker.nextNode())) {
      if (node.parentElement.closest('.visually-hidden')) continue;
      for (let i = 0; i < node.data.length; i++) {
        if (!node.data[i].trim()) continue;
        const range = document.createRange();
        range.setStart(node, i); range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        if (!rect) continue;
        const top = Math.round(rect.top);
        lines.set(top, (lines.get(top) || '') + node.data[i]);
      }
    }
    const texts = [...lines.values()];
    if (texts.length > 1 && texts.some(t => t.length === 1)) bad.push(texts.join(' / '));
  }
  return bad;
}"""


def staff_cookie(server: DaphneServer) -> dict[str, Any]:
    user = get_user_model().objects.create_user(
        username="operator", password="pw-123456!", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["steer_gate", "view_chatsession"], content_type__app_label="sessions_app"
        )
    )
    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}


def fill_the_gate() -> None:
    services.limits_set(actor=None, max_active_sessions=4)
    names = ["kim.minji", "lee.seoyeon", "park.jihoon", "choi.yerin"] + [
        f"waiting.person.{i:02d}" for i in range(16)
    ]
    for name in names:
        user = get_user_model().objects.create_user(username=name, password=None)
        services.session_open(user=user, via="api")
    for _ in range(25):  # a full audit log
        services.audit(actor=None, action="limits.set", target="gate", detail={"x": [1, 2]})
    alert_thresholds_set(actor=None, queue_length=3, queue_minutes=1)
    metrics.chat_event("backend_errors", amount=4)
    alert_thresholds_set(actor=None, errors_per_minute=1)
    alerts_evaluate()  # the errors alert: a banner on every render


@pytest.mark.parametrize("language", ["ko", "en"])
def test_console_fits_laptop_and_phone(
    daphne_server: DaphneServer, browser: Any, artifacts_dir: Path, language: str
) -> None:
    fill_the_gate()
    cookie = staff_cookie(daphne_server)
    locale = "ko-KR" if language == "ko" else "en-US"
    problems: list[str] = []
    for name, viewport in (
        ("1280", {"width": 1280, "height": 900}),
        ("phone", {"width": 390, "height": 844}),
    ):
        context = browser.new_context(
            viewport=viewport, locale=locale, is_mobile=name == "phone", device_scale_factor=1
        )
        context.add_cookies(
            [cookie, {"name": "django_language", "value": language, "url": daphne_server.url}]
        )
        try:
            page = context.new_page()
            page.goto(f"{daphne_server.url}/console/")
            page.wait_for_selector("#console-link-state[data-state=live]", timeout=10_000)
            page.wait_for_selector("#queue-table")
            assert page.locator("html").get_attribute("lang") == language
            shot = artifacts_dir / f"console_layout_{language}_{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            overflow = page.evaluate(OVERFLOW_JS)
            if overflow["scrollWidth"] > overflow["width"] or overflow["out"]:
                problems.append(f"{language}/{name}: wider than the viewport: {overflow}")
            broken = page.evaluate(HEADER_LINES_JS)
            if broken:
                problems.append(f"{language}/{name}: one-syllable header lines: {broken}")
            # The queue's actions are whole and clickable at both sizes.
            remove = page.locator("#queue-table tbody tr").first.locator("a.button.danger")
            box = remove.bounding_box()
            if box is None or box["x"] + box["width"] > viewport["width"]:
                problems.append(f"{language}/{name}: the queue's Remove button is cut off: {box}")
            if name == "phone":
                height = page.evaluate("document.documentElement.scrollHeight")
                gauges = page.locator("#console-gauges").bounding_box()
                queue = page.locator("#console-queue").bounding_box()
                active = page.locator("#console-active").bounding_box()
                assert gauges and queue and active
                if not gauges["y"] < queue["y"] < active["y"]:
                    problems.append(f"{language}/phone: order is not gauges, queue, active")
                if height > 6000:
                    problems.append(f"{language}/phone: page is {height} px tall")
            # The other staff pages at the same size: find a person, alerts, the admin's list.
            for slug, path in (
                ("people", "/console/people/?q=waiting.person.0"),
                ("alerts", "/console/alerts/"),
                ("admin_sessions", "/admin/sessions_app/chatsession/"),
            ):
                response = page.goto(f"{daphne_server.url}{path}")
                assert response is not None and response.status == 200, path
                page.screenshot(
                    path=str(artifacts_dir / f"{slug}_{language}_{name}.png"), full_page=True
                )
                if slug == "admin_sessions":
                    continue  # the admin's own changelist scrolls sideways by design
                overflow = page.evaluate(OVERFLOW_JS)
                if overflow["scrollWidth"] > overflow["width"] or overflow["out"]:
                    problems.append(
                        f"{language}/{name} {slug}: wider than the viewport: {overflow}"
                    )
                broken = page.evaluate(HEADER_LINES_JS)
                if broken:
                    problems.append(
                        f"{language}/{name} {slug}: one-syllable header lines: {broken}"
                    )
        finally:
            context.close()
    assert not problems, "\n".join(problems)
