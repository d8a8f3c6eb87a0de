"""The chat page in real Chromium (Debian's, through Playwright) against a real daphne.

21 people: the first and the 21st use browser pages, the 19 in between hold real WebSocket
connections (the same protocol the page speaks) to keep the browser count small on a 2-core
machine. A screenshot of each state is saved under artifacts/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from websockets.sync.client import ClientConnection, connect

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from tests.live import DaphneServer, start_daphne

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("orm_beside_playwright"),
]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    # A slow echo, so that an answer is still streaming when Stop is pressed.
    server = start_daphne(tmp_path, "browser", ECHO_TOKEN_DELAY_SECONDS="0.12")
    yield server
    server.stop()


def make_user(username: str, password: str | None = None) -> Any:
    user = get_user_model().objects.create_user(username=username, password=password)
    return user


def session_key(user: Any) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return str(store.session_key)


def logged_in_context(browser: Any, server: DaphneServer, user: Any, **options: Any) -> Any:
    context = browser.new_context(**options)
    context.add_cookies([{"name": "sessionid", "value": session_key(user), "url": server.url}])
    return context


def hold_socket(stack: ExitStack, server: DaphneServer, user: Any) -> ClientConnection:
    """A person whose page is open: a real WebSocket, closed when `stack` closes."""
    ws = stack.enter_context(
        connect(
            f"{server.ws_url}/ws/chat/",
            origin=server.url,  # type: ignore[arg-type]
            additional_headers={"Cookie": f"sessionid={session_key(user)}"},
            open_timeout=10,
        )
    )
    first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "queue.status"
    return ws


def shot(page: Any, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / f"chat-{name}.png"), full_page=True)


def test_twenty_one_people_the_last_waits_is_promoted_and_chats(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    users = [make_user(f"person{i:02d}") for i in range(1, 21)]
    make_user("person21", PASSWORD)

    first_context = logged_in_context(browser, server, users[0])
    first = first_context.new_page()
    first.goto(server.url + "/")
    expect(first.locator("#chat-input")).to_be_enabled(timeout=15_000)
    # A desktop window keeps the full hint, keys included.
    expect(first.locator("#chat-input")).to_have_attribute("placeholder", re.compile("Shift"))
    stack = ExitStack()
    for user in users[1:]:
        hold_socket(stack, server, user)
    assert get_manager().counts()["active"] == 20

    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")  # login required: redirected to the login form
    page.fill("#id_username", "person21")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    title = page.locator("#banner-title")
    expect(title).to_contain_text("You are number 1", timeout=15_000)
    expect(title).to_contain_text("minute")
    expect(page.locator("#chat-input")).to_be_disabled()
    assert "#1 in line" in page.title()
    shot(page, artifacts_dir, "1-queued")

    first.click("#leave-btn")  # Leave asks first: Cancel keeps the seat
    expect(first.locator("#confirm-dialog")).to_be_visible()
    first.click("#confirm-cancel")
    first.wait_for_timeout(500)
    assert get_manager().counts()["active"] == 20
    first.click("#leave-btn")
    first.click("#confirm-ok")
    expect(first.locator("#notice-text")).to_contain_text("you left", timeout=10_000)
    expect(first.locator("#leave-btn")).to_be_hidden()  # nothing left to leave
    shot(first, artifacts_dir, "2-left")

    expect(title).to_have_text("It's your turn", timeout=10_000)
    expect(page.locator("#chat-input")).to_be_enabled()
    assert page.title().startswith("Your turn")
    shot(page, artifacts_dir, "3-your-turn")

    page.fill("#chat-input", "hello gate")
    page.keyboard.press("Enter")
    answer = page.locator(".msg-assistant .text").last
    expect(answer).to_have_text("Echo: hello gate", timeout=15_000)
    expect(page.locator("#stop-btn")).to_be_hidden()
    shot(page, artifacts_dir, "4-answered")

    page.fill("#chat-input", " ".join(f"w{i}" for i in range(80)))
    page.click("#send-btn")
    expect(page.locator("#stop-btn")).to_be_visible(timeout=10_000)
    expect(page.locator(".msg-assistant.streaming .text")).to_contain_text("w1", timeout=10_000)
    page.click("#stop-btn")
    stopped = page.locator(".msg-assistant").last
    expect(stopped.locator(".tag")).to_have_text("(stopped)", timeout=10_000)
    expect(page.locator("#stop-btn")).to_be_hidden()
    assert "w79" not in stopped.inner_text()
    assert get_manager().counts()["in_flight"] == 0
    shot(page, artifacts_dir, "5-stopped")

    # A reload keeps the session and shows the history.
    page.reload()
    expect(page.locator(".msg-assistant .text").first).to_have_text("Echo: hello gate")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=10_000)

    stack.close()
    context.close()
    first_context.close()


def test_korean_mobile_dark_page_and_polling_fallback(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    services.limits_set(actor=None, max_active_sessions=1)
    stack = ExitStack()
    holder = hold_socket(stack, server, make_user("holder"))
    context = logged_in_context(
        browser,
        server,
        make_user("minji"),
        locale="ko-KR",
        color_scheme="dark",
        reduced_motion="reduce",
        viewport={"width": 390, "height": 844},
    )
    page = context.new_page()
    page.goto(server.url + "/")
    assert page.locator("html").get_attribute("lang") == "ko"
    expect(page.locator("#banner-title")).to_contain_text("대기 순번 1번", timeout=15_000)
    expect(page.locator("#leave-btn")).to_have_text("나가기")
    # The queue box sits in the page's flow at the top, fully on screen, above the thread.
    box = page.locator("#queue-banner").bounding_box()
    head = page.locator(".chat-head").bounding_box()
    assert box is not None and head is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= head["y"]
    # A phone gets the short hint, whole inside the box's two lines (the long one was cut).
    expect(page.locator("#chat-input")).to_have_attribute("placeholder", "메시지를 입력하세요")
    shot(page, artifacts_dir, "6-korean-mobile-dark")

    # WebSockets blocked: the page falls back to polling the JSON endpoint every 5 s.
    blocked = context.new_page()
    blocked.route_web_socket("**/ws/chat/", lambda ws: ws.close())
    blocked.goto(server.url + "/")
    expect(blocked.locator("#conn-state")).to_contain_text("5", timeout=20_000)
    expect(blocked.locator("#banner-title")).to_contain_text("대기 순번 1번", timeout=15_000)
    shot(blocked, artifacts_dir, "7-polling-fallback")

    holder.send(json.dumps({"type": "leave"}))
    expect(blocked.locator("#banner-title")).to_have_text("차례가 되었습니다", timeout=15_000)
    stack.close()
    context.close()


def test_the_page_reconnects_and_resyncs_after_dropped_connections(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    services.limits_set(actor=None, max_active_sessions=1)
    stack = ExitStack()
    hold_socket(stack, server, make_user("holder"))
    context = logged_in_context(browser, server, make_user("jun"))
    page = context.new_page()
    attempts: list[Any] = []

    def route(ws: Any) -> None:
        attempts.append(ws)
        if len(attempts) == 1:
            ws.close()  # the first attempt never reaches the server
        else:
            ws.connect_to_server()

    page.route_web_socket("**/ws/chat/", route)
    page.goto(server.url + "/")
    title = page.locator("#banner-title")
    expect(title).to_contain_text("You are number 1", timeout=20_000)
    assert len(attempts) == 2
    # The live connection drops (a server restart, a flaky network): the page reconnects by
    # itself after a backoff and resyncs from the first queue.status of the new connection.
    attempts[1].close(code=1012)
    expect(page.locator("#conn-state")).to_contain_text("Reconnecting", timeout=5_000)
    shot(page, artifacts_dir, "8-reconnecting")
    expect(page.locator("#conn-state")).to_have_text("", timeout=20_000)
    assert len(attempts) == 3
    expect(title).to_contain_text("You are number 1")
    stack.close()
    context.close()


def test_idle_warning_keep_button_and_the_ended_notice(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    # 12 s idle timeout: the warning comes 3 s before (a quarter of the timeout).
    services.limits_set(actor=None, idle_timeout_seconds=12)
    context = logged_in_context(browser, server, make_user("sora"))
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    notice = page.locator("#notice-text")
    expect(notice).to_contain_text("Still there?", timeout=20_000)
    expect(page.locator("#keep-btn")).to_be_visible()
    shot(page, artifacts_dir, "9-idle-warning")
    page.locator("#keep-btn").focus()
    page.keyboard.press("Enter")  # keyboard-usable
    expect(page.locator("#notice")).to_be_hidden()
    # Kept: the session is still active well past the original deadline ...
    page.wait_for_timeout(4_000)
    assert get_manager().counts()["active"] == 1
    # ... and, left alone, it ends with the reason in words.
    expect(notice).to_contain_text("idle for too long", timeout=25_000)
    expect(page.locator("#chat-input")).to_be_disabled()
    expect(page.locator("#rejoin-btn")).to_be_visible()
    shot(page, artifacts_dir, "10-ended-idle")
    context.close()
