"""The chat page, in real Chromium, shows what the person's programs do: a question asked over
HTTP with its streamed answer (and "the assistant is writing" meanwhile), and typing in another
window, in Korean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.chat_http import person
from tests.live import DaphneServer, start_daphne
from tests.test_chat_browser import logged_in_context, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("orm_beside_playwright"),
]


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    server = start_daphne(tmp_path, "http-page", ECHO_TOKEN_DELAY_SECONDS="0.25")
    yield server
    server.stop()


def test_the_page_shows_http_questions_answers_and_typing_elsewhere(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    alice = person("alice")
    context = logged_in_context(browser, server, alice.user, locale="ko-KR")
    page = context.new_page()
    page.goto(f"{server.url}/c/{alice.conversation_id}/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=20_000)

    with connect(
        f"{server.ws_url}/ws/chat/",
        additional_headers={"Authorization": f"Bearer {alice.token}"},
        open_timeout=10,
    ) as bot:
        assert json.loads(bot.recv(timeout=10))["type"] == "queue.status"
        bot.send(json.dumps({"type": "typing", "is_typing": True}))
        typing = page.locator("#typing-line")
        expect(typing).to_have_text("다른 창에서 입력하는 중…")
        shot(page, artifacts_dir, "typing-elsewhere-ko")
        bot.send(json.dumps({"type": "typing", "is_typing": False}))
        expect(typing).to_be_hidden()

    with httpx.Client(base_url=server.url, headers=alice.auth, timeout=20) as http:
        sent = http.post(
            f"/api/chat/sessions/{alice.conversation_id}/messages",
            json={"content": "프로그램이 보낸 질문 one two three four five six"},
        )
    assert sent.status_code == 201, sent.text
    messages = page.locator("#messages")
    expect(messages).to_contain_text("프로그램이 보낸 질문")
    expect(page.locator("#status-line")).to_have_text("어시스턴트가 답변을 작성하는 중…")
    shot(page, artifacts_dir, "http-question-streaming-ko")
    expect(messages).to_contain_text("Echo: 프로그램이 보낸 질문 one two three four five six")
    expect(page.locator("#status-line")).to_be_empty(timeout=10_000)
    context.close()
