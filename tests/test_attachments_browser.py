"""Attachments on the chat page, in real Chromium against a real daphne, in Korean: a pasted
image waits in the tray, goes up with the question (the upload's progress shown), and its
thumbnail appears in the conversation (and again after a reload); a PDF dropped onto the
conversation becomes a file chip; a refused file (HTML named .txt) is explained next to the box.
Screenshots (desktop and phone) go to artifacts/."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessions_app.models import Attachment, ChatMessage
from tests import attachment_files as f
from tests.live import DaphneServer, start_daphne
from tests.test_chat_browser import logged_in_context, make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("orm_beside_playwright"),
]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture
def server(transactional_db: None, tmp_path: Path, uploads: Path) -> Iterator[DaphneServer]:
    server = start_daphne(
        tmp_path,
        "attach",
        ECHO_TOKEN_DELAY_SECONDS="0.01",
        CHAT_RATE_PER_MINUTE="1000",
        CHATGATE_UPLOAD_ROOT=str(uploads),
    )
    yield server
    server.stop()


# Pastes like Ctrl+V with an image on the clipboard: a ClipboardEvent carrying the file, sent to
# the focused box (headless Chromium has no system clipboard to read a real image from).
PASTE = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const box = document.getElementById("chat-input");
  box.focus();
  return box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true,
    cancelable: true }));
}"""

# Drags a file over the conversation and drops it, as a file manager would.
DROP = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const area = document.querySelector(".chat");
  for (const kind of ["dragenter", "dragover", "drop"]) {
    const event = { dataTransfer: data, bubbles: true, cancelable: true };
    area.dispatchEvent(new DragEvent(kind, event));
  }
}"""

# Remembers whether the upload's progress bar was ever shown (it may be brief on loopback).
WATCH_PROGRESS = """() => {
  window.sawProgress = false;
  const bar = document.getElementById("attach-progress");
  new MutationObserver(() => { if (!bar.hidden) window.sawProgress = true; })
    .observe(bar, { attributes: true });
}"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def open_page(browser: Any, server: DaphneServer, user: Any, viewport: dict[str, int]) -> Any:
    from playwright.sync_api import expect

    context = logged_in_context(
        browser, server, user, viewport=viewport, locale="ko-KR", is_mobile=viewport == PHONE
    )
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=20_000)
    expect(page.locator("#attach-btn")).to_be_enabled()
    return page


def shot(page: Any, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / f"attach-{name}.png"))


def thumbnail_loaded(page: Any) -> None:
    """The thumbnail in the question is a real, decoded image (not a broken icon)."""
    from playwright.sync_api import expect

    thumb = page.locator(".msg-user .msg-thumb").last
    expect(thumb).to_be_visible(timeout=20_000)
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle(), timeout=20_000
    )
    width = thumb.evaluate("(img) => img.naturalWidth")
    assert width == 384  # the server's 384-pixel thumbnail of a 640x480 image, not the original


def test_a_pasted_image_is_uploaded_and_its_thumbnail_shown_in_the_conversation(
    server: DaphneServer, browser: Any, artifacts_dir: Path, uploads: Path
) -> None:
    from playwright.sync_api import expect

    user = make_user("jiwoo")
    page = open_page(browser, server, user, DESKTOP)
    expect(page.locator("#attach-btn")).to_have_attribute("title", "파일 첨부")

    assert (
        page.evaluate(
            PASTE, [b64(f.image("PNG", (640, 480), "royalblue")), "image.png", "image/png"]
        )
        is False
    )  # the page took the paste
    expect(page.locator("#attach-tray .attach-preview")).to_be_visible()
    expect(page.locator("#attach-tray .file-chip-name")).to_have_text("image.png")
    page.fill("#chat-input", "이 그림은 무슨 색인가요?")
    shot(page, artifacts_dir, "tray-ko")

    page.evaluate(WATCH_PROGRESS)
    page.press("#chat-input", "Enter")
    question = page.locator(".msg-user").last
    expect(question.locator(".text")).to_have_text("이 그림은 무슨 색인가요?", timeout=20_000)
    thumbnail_loaded(page)
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(1, timeout=20_000)
    expect(page.locator(".msg-assistant .text")).to_contain_text("[Attached image: image.png]")
    expect(page.locator("#attach-tray")).to_be_hidden()
    expect(page.locator("#chat-input")).to_have_value("")
    assert page.evaluate("window.sawProgress") is True
    shot(page, artifacts_dir, "thumbnail-ko")

    row = Attachment.objects.get()
    assert row.owner_id == user.pk and row.content_type == "image/png"
    assert row.message is not None and row.message.content == "이 그림은 무슨 색인가요?"
    assert len([p for p in uploads.rglob("*") if p.is_file()]) == 2  # the image + thumbnail

    # Reloaded from history: the same thumbnail, linking to the full image.
    page.reload()
    thumbnail_loaded(page)
    link = page.locator(".msg-user .msg-thumb-link").last
    expect(link).to_have_attribute("href", f"/api/chat/files/{row.pk}")

    # A PDF dropped onto the conversation: a file chip, sent with an empty box (its name asks).
    page.evaluate(DROP, [b64(f.pdf("Budget 2027")), "budget.pdf", "application/pdf"])
    expect(page.locator("#attach-tray .file-chip-name")).to_have_text("budget.pdf")
    page.click("#send-btn")
    chip = page.locator(".msg-user .file-chip").last
    expect(chip).to_contain_text("budget.pdf", timeout=20_000)
    expect(chip.locator(".file-chip-icon")).to_have_text("PDF")
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(2, timeout=20_000)
    expect(page.locator(".msg-assistant .text").last).to_contain_text("Budget 2027")

    # Refused by the server (HTML named .txt): said next to the box, in Korean; nothing stored.
    page.set_input_files(
        "#attach-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": f.HTML}]
    )
    expect(page.locator("#attach-tray .file-chip-name")).to_have_text("notes.txt")
    page.fill("#chat-input", "읽어 주세요")
    page.press("#chat-input", "Enter")
    error = page.locator("#attach-error")
    expect(error).to_be_visible(timeout=20_000)
    expect(error).to_contain_text("HTML이나 XML이 담긴 파일은 첨부할 수 없어요")
    expect(page.locator("#chat-input")).to_have_value("읽어 주세요")  # nothing is lost
    shot(page, artifacts_dir, "refused-ko")
    assert Attachment.objects.count() == 2
    assert not ChatMessage.objects.filter(content="읽어 주세요").exists()

    # Refused by the page before any upload: a type that is not on the list.
    page.set_input_files(
        "#attach-input", files=[{"name": "a.zip", "mimeType": "application/zip", "buffer": f.ZIP}]
    )
    expect(error).to_contain_text("이 파일은 첨부할 수 없어요")
    page.context.close()


def test_on_a_phone_the_pasted_image_shows_as_a_thumbnail(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    user = make_user("minseo")
    page = open_page(browser, server, user, PHONE)
    page.evaluate(PASTE, [b64(f.image("JPEG", (640, 480), "seagreen")), "photo.jpg", "image/jpeg"])
    expect(page.locator("#attach-tray .attach-preview")).to_be_visible()
    page.fill("#chat-input", "사진 설명해 주세요")
    shot(page, artifacts_dir, "tray-phone-ko")
    page.press("#chat-input", "Enter")
    thumbnail_loaded(page)
    expect(page.locator(".msg-assistant:not(.streaming)")).to_have_count(1, timeout=20_000)
    box = page.locator(".msg-user .msg-thumb").last.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    shot(page, artifacts_dir, "thumbnail-phone-ko")
    page.context.close()
