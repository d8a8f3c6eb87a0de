"""Hangul input in real Chromium: a syllable still being composed when Enter is pressed.

The composition is driven through the DevTools protocol (`Input.imeSetComposition`, then
`Input.insertText` to commit), as a Korean IME does it. The Enter that arrives while "요" is
still composing belongs to the IME; one Enter after the composition sends the whole message
exactly once. Several chat tools send "안녕하세" and then "요", or need two Enters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import DaphneServer, start_daphne
from tests.test_chat_browser import logged_in_context, make_user, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("orm_beside_playwright"),
]


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    server = start_daphne(tmp_path, "ime", ECHO_TOKEN_DELAY_SECONDS="0")
    yield server
    server.stop()


def sent_messages(page: Any) -> list[dict[str, Any]]:
    """Every `message` frame the page sends on its socket."""
    frames: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        def on_frame(payload: Any) -> None:
            try:
                frame = json.loads(payload)
            except (TypeError, ValueError):
                return
            if frame.get("type") == "message":
                frames.append(frame)

        ws.on("framesent", on_frame)

    page.on("websocket", on_socket)
    return frames


@pytest.mark.parametrize("enter_key_code", [13, 229], ids=["enter-while-composing", "keycode-229"])
def test_one_enter_after_a_composition_sends_the_whole_message_once(
    server: DaphneServer, browser: Any, artifacts_dir: Path, enter_key_code: int
) -> None:
    from playwright.sync_api import expect

    context = logged_in_context(browser, server, make_user("haneul"), locale="ko-KR")
    page = context.new_page()
    frames = sent_messages(page)
    page.goto(server.url + "/")
    box = page.locator("#chat-input")
    expect(box).to_be_enabled(timeout=15_000)
    box.focus()
    cdp = context.new_cdp_session(page)

    cdp.send("Input.insertText", {"text": "안녕하세"})
    cdp.send("Input.imeSetComposition", {"text": "요", "selectionStart": 1, "selectionEnd": 1})
    # Enter while "요" is composing: the IME's, not the page's.
    for kind in ("rawKeyDown", "keyUp"):
        cdp.send(
            "Input.dispatchKeyEvent",
            {
                "type": kind,
                "key": "Enter",
                "code": "Enter",
                "windowsVirtualKeyCode": enter_key_code,
                "nativeVirtualKeyCode": enter_key_code,
            },
        )
    page.wait_for_timeout(300)
    assert frames == []
    cdp.send("Input.insertText", {"text": "요"})  # the composition is committed
    assert box.input_value() == "안녕하세요"
    page.keyboard.press("Enter")

    questions = page.locator(".msg-user .text")
    expect(questions).to_have_count(1, timeout=10_000)
    expect(questions).to_have_text("안녕하세요")
    expect(page.locator(".msg-assistant:not(.streaming) .text")).to_have_text(
        "Echo: 안녕하세요", timeout=10_000
    )
    page.wait_for_timeout(500)  # nothing else trickles out afterwards
    assert [f["content"] for f in frames] == ["안녕하세요"]
    expect(questions).to_have_count(1)
    expect(box).to_have_value("")
    shot(page, artifacts_dir, f"ime-{enter_key_code}")
    context.close()
