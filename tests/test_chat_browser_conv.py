"""Conversations on the chat page, in real Chromium against a real daphne: the sidebar (date
groups, new, rename, archive/restore, delete after asking, Korean search, a drawer on phones),
a URL per conversation (pushState, Back), regenerate and edit as branches switched with <1/2>,
retry of a failed answer, Markdown answers through the live socket, paging edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from sessions_app.models import ChatMessage, Conversation
from tests.live import DaphneServer, start_daphne
from tests.test_chat_browser import logged_in_context, make_user, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("orm_beside_playwright"),
]
UUID_URL = r"/c/[0-9a-f-]{36}/$"


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    server = start_daphne(
        tmp_path, "conv", ECHO_TOKEN_DELAY_SECONDS="0.01", CHAT_RATE_PER_MINUTE="1000"
    )
    yield server
    server.stop()


def conversation(
    owner: Any, title: str, pairs: int, *, ago: timedelta | None = None, last_status: str = "done"
) -> Conversation:
    """A conversation recorded earlier: `pairs` questions, each with its answer."""
    when = timezone.now() - (ago or timedelta(0))
    conv = Conversation.objects.create(
        owner=owner, title=title, created_at=when, updated_at=when, last_message_at=when
    )
    parent = None
    for i in range(1, pairs + 1):
        q = ChatMessage.objects.create(
            conversation=conv,
            parent=parent,
            sender_type="user",
            content=f"q{i}",
            status="done",
            created_at=when,
        )
        status = last_status if i == pairs else "done"
        parent = ChatMessage.objects.create(
            conversation=conv,
            parent=q,
            sender_type="assistant",
            content=f"a{i}" if status == "done" else "",
            status=status,
            created_at=when,
        )
    return conv


def since_local_day(days_back: int, hours: float) -> timedelta:
    """How long ago `hours` into the local day `days_back` days ago was. Local: TIME_ZONE, the
    browser's zone too (Django sets TZ for this process and Chromium inherits it). A fixed
    "1 day and 1 hour ago" was two days back between midnight and 1 a.m. there."""
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return timezone.now() - (start - timedelta(days=days_back) + timedelta(hours=hours))


def ask(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    before = page.locator(".msg-assistant:not(.streaming)").count()
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(before + 1, timeout=15_000)


def test_conversations_sidebar_urls_branches_and_organising(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    user = make_user("yuna")
    conversation(user, "from yesterday", 1, ago=since_local_day(1, hours=12))
    conversation(user, "earlier this week", 1, ago=timedelta(days=4))
    conversation(user, "last month", 1, ago=timedelta(days=40))
    context = logged_in_context(browser, server, user, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    groups = page.locator(".conv-group-title")
    expect(groups).to_have_text(["Yesterday", "Previous 7 days", "Older"])

    # The first message starts a conversation with its own URL and a title from the question.
    ask(page, "How do I bake bread?")
    expect(page).to_have_url(re.compile(UUID_URL))
    first_url = page.url
    expect(page.locator("#chat-heading")).to_have_text("How do I bake bread?")
    expect(groups).to_have_text(["Today", "Yesterday", "Previous 7 days", "Older"])
    current = page.locator(".conv-item.current .conv-link")
    expect(current).to_contain_text("How do I bake bread?")

    # Regenerate: a second version beside the first, switchable ‹1/2›.
    answer = page.locator(".msg-assistant").last
    first_answer_id = answer.get_attribute("data-id")
    answer.locator(".act-regenerate").click()
    expect(page.locator(".msg-assistant .branch-pos")).to_have_text("2/2", timeout=15_000)
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(1, timeout=15_000)
    second_answer_id = page.locator(".msg-assistant").get_attribute("data-id")
    assert second_answer_id != first_answer_id
    page.locator(".msg-assistant .branch-prev").click()
    expect(page.locator(".msg-assistant .branch-pos")).to_have_text("1/2")
    expect(page.locator(".msg-assistant")).to_have_attribute("data-id", first_answer_id or "")
    page.locator(".msg-assistant .branch-next").click()
    expect(page.locator(".msg-assistant")).to_have_attribute("data-id", second_answer_id or "")

    # Edit the question: a new branch; the old question and its answers are kept.
    page.locator(".msg-user .act-edit").click()
    page.fill(".edit-form textarea", "How do I bake rye bread?")
    page.click(".edit-form button[type=submit]")
    expect(page.locator(".msg-user .text")).to_have_text("How do I bake rye bread?", timeout=15_000)
    expect(page.locator(".msg-user .branch-pos")).to_have_text("2/2")
    expect(page.locator(".msg-assistant:not(.streaming) .text")).to_have_text(
        "Echo: How do I bake rye bread?", timeout=15_000
    )
    page.locator(".msg-user .branch-prev").click()
    expect(page.locator(".msg-user .text")).to_have_text("How do I bake bread?")
    expect(page.locator(".msg-assistant .branch-pos")).to_have_text("2/2")
    shot(page, artifacts_dir, "conv-branches")

    # New conversation: back to "/", then a Korean one.
    page.click("#new-conv-btn")
    expect(page).to_have_url(server.url + "/")
    expect(page.locator(".msg")).to_have_count(0)
    ask(page, "아보카도 샐러드 만드는 법")
    expect(page).to_have_url(re.compile(UUID_URL))
    korean_url = page.url
    assert korean_url != first_url

    # Back goes to the previous conversation (its own URL, its own thread).
    page.go_back()
    expect(page).to_have_url(server.url + "/")
    page.go_back()
    expect(page).to_have_url(first_url)
    expect(page.locator(".msg-user .text").first).to_contain_text("bake")
    page.go_forward()
    page.go_forward()
    expect(page).to_have_url(korean_url)
    expect(page.locator(".msg-user .text")).to_have_text("아보카도 샐러드 만드는 법")

    # Search: Korean, over titles and message text.
    search = page.locator("#conv-search")
    search.fill("샐러드")
    expect(page.locator(".conv-link")).to_have_count(1)
    expect(page.locator(".conv-link")).to_contain_text("아보카도")
    search.fill("rye")  # only in a message, not in a title
    expect(page.locator(".conv-link")).to_have_count(1)
    expect(page.locator(".conv-link")).to_contain_text("bake bread")
    search.fill("nothing like this")
    expect(page.locator("#conv-empty")).to_have_text("No conversation matches.")
    search.fill("")
    expect(page.locator(".conv-link")).to_have_count(5)

    # Rename (kept after a reload), archive, restore.
    item = page.locator(".conv-item", has_text="bake bread")
    item.hover()
    item.locator(".act-rename").click()
    page.fill(".conv-rename input", "Bread notes")
    page.press(".conv-rename input", "Enter")
    expect(page.locator(".conv-item", has_text="Bread notes")).to_have_count(1)
    page.reload()
    expect(page.locator(".conv-item", has_text="Bread notes")).to_have_count(1, timeout=10_000)
    item = page.locator(".conv-item", has_text="Bread notes")
    item.hover()
    item.locator(".act-archive").click()
    expect(page.locator(".conv-item", has_text="Bread notes")).to_have_count(0)
    page.click("#archived-btn")
    expect(page.locator("#conv-heading")).to_have_text("Archived")
    archived = page.locator(".conv-item", has_text="Bread notes")
    expect(archived).to_have_count(1)
    shot(page, artifacts_dir, "conv-archived")
    archived.hover()
    archived.locator(".act-restore").click()
    expect(archived).to_have_count(0)
    page.click("#archived-btn")
    expect(page.locator(".conv-item", has_text="Bread notes")).to_have_count(1)

    # Delete asks first: Cancel keeps it; Delete removes it and leaves its URL.
    item = page.locator(".conv-item", has_text="아보카도")
    item.hover()
    item.locator(".act-delete").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("아보카도")
    page.click("#confirm-cancel")
    expect(item).to_have_count(1)
    item.hover()
    item.locator(".act-delete").click()
    page.click("#confirm-ok")
    expect(page.locator(".conv-item", has_text="아보카도")).to_have_count(0)
    expect(page).to_have_url(server.url + "/")  # it was open
    assert Conversation.objects.get(title__startswith="아보카도").status == "deleted"
    shot(page, artifacts_dir, "conv-desktop")
    context.close()


def test_korean_phone_drawer_markdown_answer_and_retry(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    user = make_user("minseo")
    # An hour ago, or just after midnight if that was yesterday: the group below is today's.
    earlier = min(
        timedelta(hours=1), max(since_local_day(0, hours=0) - timedelta(seconds=1), timedelta(0))
    )
    failed = conversation(user, "실패한 답변", 1, ago=earlier, last_status="failed")
    context = logged_in_context(
        browser, server, user, locale="ko-KR", viewport={"width": 390, "height": 844}
    )
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    sidebar = page.locator("#sidebar")
    box = sidebar.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 0  # the drawer is closed
    page.click("#drawer-btn")
    expect(page.locator(".conv-group-title")).to_have_text(["오늘"])
    page.wait_for_timeout(400)
    box = sidebar.bounding_box()
    assert box is not None and box["x"] >= 0
    shot(page, artifacts_dir, "conv-phone-drawer")
    page.locator(".conv-link", has_text="실패한 답변").click()
    expect(page).to_have_url(f"{server.url}/c/{failed.pk}/")
    page.wait_for_timeout(400)
    box = sidebar.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 0  # closed again

    # A failed answer offers a retry; the retry is a new version (‹2/2›).
    expect(page.locator(".msg-assistant .tag")).to_have_text("(실패)")
    page.locator(".msg-assistant .act-regenerate").click()
    expect(page.locator(".msg-assistant .branch-pos")).to_have_text("2/2", timeout=15_000)
    expect(page.locator(".msg-assistant:not(.streaming) .text")).to_have_text(
        "Echo: q1", timeout=15_000
    )

    # Markdown through the live socket (the echo keeps the lines).
    markdown = (
        "안내\n\n# 제목\n\n- 하나\n- 둘\n\n> 인용\n\n| 이름 | 값 |\n|---|---|\n| 가 | 1 |\n\n"
        "```python\nprint('안녕')\n```"
    )
    page.fill("#chat-input", markdown)
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(2, timeout=15_000)
    last = page.locator(".msg-assistant").last
    expect(last.locator("h1")).to_have_text("제목", timeout=15_000)
    expect(last.locator("ul > li")).to_have_text(["하나", "둘"])
    expect(last.locator("blockquote")).to_contain_text("인용")
    expect(last.locator("table td")).to_have_text(["가", "1"])
    expect(last.locator(".code-copy")).to_have_text("코드 복사")
    expect(last.locator(".hljs-built_in, .hljs-title, .hljs-string").first).to_be_visible()
    shot(page, artifacts_dir, "conv-phone-markdown")
    context.close()


@pytest.mark.parametrize("pairs", [0, 15, 16, 40])
def test_paging_edges(server: DaphneServer, browser: Any, pairs: int) -> None:
    """30 messages a page: 0, exactly one page (15 pairs), one more (16), several pages."""
    from playwright.sync_api import expect

    user = make_user(f"pager{pairs}")
    conv = conversation(user, f"{pairs} pairs", pairs)
    context = logged_in_context(browser, server, user)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/messages" in r.url else None)
    page.goto(f"{server.url}/c/{conv.pk}/")
    msgs = page.locator("#messages .msg")
    expect(msgs).to_have_count(min(30, pairs * 2), timeout=10_000)
    for _ in range(6):
        page.locator("#messages").evaluate("(el) => el.scrollTo(0, 0)")
        page.wait_for_timeout(500)
    expect(msgs).to_have_count(pairs * 2)
    texts = page.locator("#messages .msg .text").all_inner_texts()
    expected = [t for i in range(1, pairs + 1) for t in (f"q{i}", f"a{i}")]
    assert texts == expected  # oldest first, none twice, none missing
    pages_needed = max(1, -(-pairs * 2 // 30))
    assert len(requests) == pages_needed, requests  # no request past the last page
    context.close()


def test_a_conversation_outlives_its_seat_and_continues_with_the_next(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    context = logged_in_context(browser, server, make_user("tomorrow"))
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    ask(page, "remember this")
    expect(page).to_have_url(re.compile(UUID_URL))
    url = page.url
    page.click("#leave-btn")
    page.click("#confirm-ok")
    expect(page.locator("#notice-text")).to_contain_text("you left", timeout=10_000)
    # Still readable with no seat at all.
    expect(page.locator(".msg-user .text")).to_have_text("remember this")
    page.click("#rejoin-btn")  # a new seat, the same conversation
    expect(page).to_have_url(url)
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    expect(page.locator(".msg-assistant .text")).to_have_text("Echo: remember this")
    ask(page, "and this")
    expect(page).to_have_url(url)
    expect(page.locator(".msg-user .text")).to_have_text(["remember this", "and this"])
    conv = Conversation.objects.get()
    assert ChatMessage.objects.filter(conversation=conv).count() == 4
    seats = set(ChatMessage.objects.filter(conversation=conv).values_list("seat_id", flat=True))
    assert len(seats - {None}) == 2  # asked with two different seats
    shot(page, artifacts_dir, "conv-next-seat")
    context.close()


def test_stop_reaches_the_answer_being_written_from_another_conversation(
    server: DaphneServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    user = make_user("switcher")
    other = conversation(user, "another one", 1, ago=timedelta(minutes=5))
    context = logged_in_context(browser, server, user)
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)
    page.fill("#chat-input", " ".join(f"w{i}" for i in range(1500)))  # about 15 s of answer
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg-assistant.streaming .text")).to_contain_text("w3", timeout=10_000)
    page.locator(".conv-link", has_text="another one").click()
    expect(page).to_have_url(f"{server.url}/c/{other.pk}/")
    expect(page.locator("#stop-btn")).to_be_visible()
    page.click("#stop-btn")
    expect(page.locator("#stop-btn")).to_be_hidden(timeout=10_000)
    page.go_back()
    expect(page.locator(".msg-assistant .tag")).to_have_text("(stopped)", timeout=10_000)
    stopped = ChatMessage.objects.get(sender_type="assistant", status="cancelled")
    assert "w1499" not in stopped.content
    context.close()
