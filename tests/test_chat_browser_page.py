"""What people saw on the chat page and must no longer see, in real Chromium against a real
daphne: rate limits that ate the text, a question waiting for an answer with no way back, the
staff reason dropped, Leave that never asked, "1 seconds", the staff banner under the queue
box, the dark Send button at 2.5:1, a login form that forgot the username, /favicon.ico 404.
Plus the thread itself: it follows a streaming answer unless the reader scrolled up, a reload
draws exactly what was seen live, and an answer can be copied.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from sessions_app import conf
from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatSession
from tests.live import DaphneServer, start_daphne
from tests.test_chat_browser import PASSWORD, hold_socket, logged_in_context, make_user, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("orm_beside_playwright"),
]


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    server = start_daphne(
        tmp_path, "page", ECHO_TOKEN_DELAY_SECONDS="0.05", CHAT_RATE_PER_MINUTE="3"
    )
    yield server
    server.stop()


def contrast(page: Any, selector: str) -> float:
    """WCAG contrast of an element's text colour on its background colour."""
    return float(
        page.locator(selector).evaluate(
            """(el) => {
              const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
              const lum = (c) => {
                const [r, g, b] = rgb(c).map((v) => {
                  v /= 255;
                  return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
                });
                return 0.2126 * r + 0.7152 * g + 0.0722 * b;
              };
              const s = getComputedStyle(el);
              const a = lum(s.color), b = lum(s.backgroundColor);
              return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
            }"""
        )
    )


def test_login_keeps_the_username_favicon_answers_and_dark_send_contrast(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    make_user("dana", PASSWORD)
    with urlopen(server.url + "/favicon.ico") as response:  # follows the redirect
        assert response.status == 200
        assert response.read(4) == b"\x00\x00\x01\x00"  # an ICO file
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#id_username", "dana")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_be_visible()
    expect(page.locator("#id_username")).to_have_value("dana")
    expect(page.locator("#id_password")).to_be_focused()
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    expect(page.locator("#send-btn")).to_be_visible()
    assert contrast(page, "#send-btn") >= 4.5
    limit = str(conf.get("MAX_MESSAGE_CHARS"))
    expect(page.locator("#chat-input")).to_have_attribute("maxlength", limit)
    shot(page, artifacts_dir, "dark")
    context.close()


def test_rate_limit_keeps_the_text_and_counts_down(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    context = logged_in_context(browser, server, make_user("quick"))
    page = context.new_page()
    page.goto(server.url + "/")
    box = page.locator("#chat-input")
    expect(box).to_be_enabled(timeout=15_000)
    answers = page.locator(".msg-assistant:not(.streaming)")
    # The limit counts per fixed minute (ratelimit.py): four questions that straddle a minute's
    # end would all be allowed, so start early in a minute of the Redis clock.
    into_window = get_manager().server_time() % 60
    if into_window > 30:
        time.sleep(60.2 - into_window)
    for index in range(1, 4):  # three a minute are allowed
        box.fill(f"question {index}")
        box.press("Enter")
        expect(answers).to_have_count(index, timeout=10_000)
        expect(box).to_have_value("")
    box.fill("the fourth, refused")
    box.press("Enter")
    error = page.locator("#chat-error")
    expect(error).to_contain_text("your text is kept", timeout=10_000)
    expect(error).to_contain_text("seconds")
    expect(box).to_have_value("the fourth, refused")
    expect(page.locator("#send-btn")).to_be_disabled()
    first = error.inner_text()
    page.wait_for_timeout(2_100)
    assert error.inner_text() != first  # it counts down
    assert page.locator(".msg-user").count() == 3
    shot(page, artifacts_dir, "rate-limited")
    context.close()


def test_waiting_question_can_be_cancelled(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    services.limits_set(actor=None, max_concurrent_queries=1)
    one = logged_in_context(browser, server, make_user("first"))
    two = logged_in_context(browser, server, make_user("second"))
    page1, page2 = one.new_page(), two.new_page()
    for page in (page1, page2):
        page.goto(server.url + "/")
        expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    page1.fill("#chat-input", " ".join(f"w{i}" for i in range(60)))  # holds the one slot
    page1.press("#chat-input", "Enter")
    expect(page1.locator("#stop-btn")).to_be_visible(timeout=10_000)
    page2.fill("#chat-input", "may I?")
    page2.press("#chat-input", "Enter")
    status = page2.locator("#status-line")
    expect(status).to_contain_text("in line for an answer", timeout=10_000)
    shot(page2, artifacts_dir, "waiting-for-answer")
    page2.click("#cancel-wait-btn")
    expect(status).to_be_empty()
    page1.click("#stop-btn")
    expect(page1.locator("#stop-btn")).to_be_hidden(timeout=10_000)
    # The slot is free now, and still the cancelled question is not answered: its answer's
    # place says it stopped, with no text.
    placeholder = page2.locator(".msg-assistant")
    expect(placeholder).to_have_count(1)
    expect(placeholder.locator(".tag")).to_have_text("(stopped)", timeout=10_000)
    page2.wait_for_timeout(1_500)
    expect(placeholder.locator(".text")).to_have_text("")
    assert get_manager().counts()["in_flight"] == 0
    one.close()
    two.close()


def test_staff_reason_is_shown_leave_gone_and_the_staff_banner_is_never_covered(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    services.limits_set(actor=None, max_active_sessions=1)
    stack = ExitStack()
    hold_socket(stack, server, make_user("holder"))
    for viewport in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):
        context = logged_in_context(
            browser, server, make_user(f"waiter{viewport['width']}"), viewport=viewport
        )
        page = context.new_page()
        page.goto(server.url + "/")
        expect(page.locator("#banner-title")).to_contain_text("You are number", timeout=15_000)
        services.limits_set(actor=None, banner_message="Maintenance at 18:00")
        staff = page.locator("#staff-banner")
        expect(staff).to_have_text("Maintenance at 18:00", timeout=10_000)
        a = staff.bounding_box()
        b = page.locator("#queue-banner").bounding_box()
        assert a and b
        overlap = not (a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
        assert not overlap, (a, b)
        shot(page, artifacts_dir, f"staff-banner-{viewport['width']}")
        services.limits_set(actor=None, banner_message="")
        context.close()

    context = logged_in_context(browser, server, make_user("closed"))
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#banner-title")).to_contain_text("You are number", timeout=15_000)
    expect(page.locator("#leave-btn")).to_be_visible()
    session_id = services.session_live_for_user(
        ChatSession.objects.get(user__username="closed").user
    )
    services.session_close(
        session_id=session_id, reason=ChatSession.Reason.ADMIN, note="Please use the help desk."
    )
    expect(page.locator("#notice-text")).to_contain_text("staff closed it", timeout=10_000)
    note = page.locator("#notice-note")
    expect(note).to_be_visible()
    expect(note).to_have_text("Staff's reason: Please use the help desk.")
    expect(page.locator("#leave-btn")).to_be_hidden()
    shot(page, artifacts_dir, "staff-closed")
    stack.close()
    context.close()


def test_thread_follows_unless_scrolled_up_and_reload_draws_the_same(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    context = logged_in_context(
        browser, server, make_user("reader"), viewport={"width": 1280, "height": 800}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(server.url + "/")
    box = page.locator("#chat-input")
    expect(box).to_be_enabled(timeout=15_000)
    gap = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight"
    messages = page.locator("#messages")
    long = " ".join(f"word{i}" for i in range(260))
    box.fill(long)
    box.press("Enter")
    expect(page.locator(".msg-assistant.streaming")).to_have_count(1, timeout=10_000)
    page.wait_for_timeout(1_500)
    assert messages.evaluate("(el) => el.scrollHeight > el.clientHeight")
    assert messages.evaluate(gap) <= 48  # following the answer as it grows
    messages.evaluate("(el) => el.scrollTo(0, 0)")  # the reader scrolls up
    jump = page.locator("#jump-btn")
    expect(jump).to_be_visible(timeout=5_000)
    page.wait_for_timeout(500)
    assert messages.evaluate("(el) => el.scrollTop") < 50  # not dragged back down
    shot(page, artifacts_dir, "jump-to-latest")
    jump.click()
    expect(jump).to_be_hidden()
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(1, timeout=30_000)
    page.wait_for_timeout(300)
    assert messages.evaluate(gap) <= 48

    page.locator(".msg-assistant .act-copy").click()
    expect(page.locator(".msg-assistant .act-copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "Echo: " + long
    page.wait_for_timeout(1_700)  # the button's label comes back

    live = messages.evaluate("(el) => el.innerHTML")
    page.reload()
    expect(page.locator(".msg-assistant")).to_have_count(1, timeout=10_000)
    assert messages.evaluate("(el) => el.innerHTML") == live
    # No stray blank lines or indentation inside the bubbles.
    texts = page.locator(".msg .text").all_inner_texts()
    assert texts == [long, "Echo: " + long]
    context.close()


def test_plural_seconds_in_the_idle_warning(server: DaphneServer, browser: Any) -> None:
    from playwright.sync_api import expect

    services.limits_set(actor=None, idle_timeout_seconds=12)
    context = logged_in_context(browser, server, make_user("timer"))
    page = context.new_page()
    page.goto(server.url + "/")
    notice = page.locator("#notice-text")
    expect(notice).to_contain_text("seconds unless", timeout=25_000)
    expect(notice).to_contain_text("ends in 1 second unless", timeout=10_000)
    context.close()


def frames_of(page: Any) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    page.on("websocket", on_socket)
    return received


def test_paused_admissions_say_the_place_is_kept_in_both_languages(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    services.limits_set(actor=None, max_active_sessions=1)
    stack = ExitStack()
    holder = hold_socket(stack, server, make_user("holder"))
    pages = []
    for name, locale in (("eun", "en-US"), ("ji", "ko-KR")):
        context = logged_in_context(browser, server, make_user(name), locale=locale)
        page = context.new_page()
        page.goto(server.url + "/")
        expect(page.locator("#banner-title")).not_to_have_text("Connecting…", timeout=15_000)
        pages.append(page)
    services.limits_set(actor=None, admissions_paused=True)
    english, korean = (page.locator("#banner-title") for page in pages)
    expect(english).to_have_text("Admissions are paused; your place is kept.", timeout=10_000)
    expect(pages[0].locator("#banner-detail")).to_contain_text("You are number 1")
    expect(pages[0].locator("#banner-detail")).not_to_contain_text("minute")
    expect(korean).to_have_text(
        "지금은 입장이 잠시 멈춰 있어요. 대기 순서는 그대로 유지됩니다.", timeout=10_000
    )
    expect(pages[1].locator("#banner-detail")).to_contain_text("대기 순번 2번")
    shot(pages[1], artifacts_dir, "paused-ko")
    # Resumed: the wait shows again with its estimate.
    services.limits_set(actor=None, admissions_paused=False)
    expect(english).to_contain_text("You are number 1", timeout=10_000)
    holder.send(json.dumps({"type": "leave"}))
    expect(english).to_have_text("It's your turn", timeout=10_000)
    stack.close()
    for page in pages:
        page.context.close()
