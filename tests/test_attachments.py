"""Attachments (chat/attachments.py): what is accepted and refused (and that a refusal stores
nothing, not even part of a file), thumbnails, storage under random names, and what reaches the
model: the text of PDF and text files, and images as image parts for a model that reads them,
checked in the request body a real OpenAI-compatible server on loopback receives."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from PIL import Image

from sessions_app.chat import answering, attachments, conversations, messages
from sessions_app.chat.attachments_sniff import Refused
from sessions_app.gate import services
from sessions_app.models import Attachment, ChatMessage
from tests import attachment_files as f
from tests.test_backends import FakeModelServer, model_server  # noqa: F401  (fixture)


@pytest.fixture
def store(settings: Any, tmp_path: Path) -> Path:
    return f.use_store(settings, tmp_path)


def refused(name: str, data: bytes) -> Refused:
    with pytest.raises(Refused) as caught:
        attachments.attachment_check(name=name, data=data)
    return caught.value


# --- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("photo.png", f.image("PNG"), "image/png"),
        ("photo.JPG", f.image("JPEG"), "image/jpeg"),
        ("photo.jpeg", f.image("JPEG"), "image/jpeg"),
        ("photo.webp", f.image("WEBP"), "image/webp"),
    ],
)
def test_images_are_accepted_with_a_thumbnail_that_fits_the_box(
    name: str, data: bytes, content_type: str
) -> None:
    checked = attachments.attachment_check(name=name, data=data)
    assert checked.content_type == content_type and checked.name == name
    assert checked.thumbnail is not None
    with Image.open(io.BytesIO(checked.thumbnail)) as thumb:
        assert thumb.format == "WEBP"
        assert max(thumb.size) == 384 and thumb.size == (384, 288)  # 640x480 scaled, ratio kept
    assert checked.text == ""


def test_pdf_and_text_are_accepted_with_their_text() -> None:
    pdf = attachments.attachment_check(name="report.pdf", data=f.pdf("Quarterly total is 42"))
    assert pdf.content_type == "application/pdf" and pdf.thumbnail is None
    assert "Quarterly total is 42" in pdf.text
    text = attachments.attachment_check(name="메모.txt", data=f.TEXT)
    assert text.content_type == "text/plain" and text.text == f.TEXT.decode()
    markdown = attachments.attachment_check(name="notes.md", data=b"# Title\n\n- a\n")
    assert markdown.content_type == "text/plain"


def test_extracted_text_is_capped(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "ATTACHMENT_TEXT_CHARS": 10}
    checked = attachments.attachment_check(name="long.txt", data=b"0123456789abcdef")
    assert checked.text == "0123456789"


def test_a_folder_in_the_name_is_dropped() -> None:
    assert attachments.clean_name("../../etc/passwd.txt") == "passwd.txt"
    assert attachments.clean_name("C:\\Users\\me\\a.png") == "a.png"
    assert attachments.clean_name("\x00\x1b") == "file"
    assert len(attachments.clean_name("x" * 400 + ".png")) == 255
    assert attachments.clean_name("x" * 400 + ".png").endswith(".png")


# --- refused -----------------------------------------------------------------------------------


def test_a_pdf_named_png_is_refused_naming_both_types_and_what_is_allowed() -> None:
    exc = refused("cat.png", f.pdf())
    assert (exc.status, exc.code) == (415, "TYPE_MISMATCH")
    assert ".png" in exc.message and "application/pdf" in exc.message
    assert "JPEG, PNG or WebP" in exc.message and "10\u00a0MB" in exc.message


def test_a_png_named_txt_is_refused() -> None:
    assert refused("notes.txt", f.image()).code == "TYPE_MISMATCH"


@pytest.mark.parametrize(
    "data",
    [
        f.HTML,
        b"  \n<html><body>hi</body></html>",
        b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        b"<?xml version='1.0'?><x/>",
        b"\xef\xbb\xbf<script>alert(1)</script>",
        b"<!-- a comment --><p>x</p>",
    ],
)
def test_html_named_txt_is_refused(data: bytes) -> None:
    exc = refused("notes.txt", data)
    assert (exc.status, exc.code) == (415, "UNSUPPORTED_TYPE")
    assert "HTML" in exc.message


def test_text_that_merely_mentions_tags_is_text() -> None:
    checked = attachments.attachment_check(name="q.txt", data=b"Why does <div> wrap?")
    assert checked.content_type == "text/plain"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("archive.zip", f.ZIP),
        ("archive.txt", f.ZIP),
        ("latin1.txt", "café".encode("latin-1")),
        ("nul.txt", b"abc\x00def"),
        ("movie.gif", b"GIF89a" + b"\x00" * 40),
    ],
)
def test_unknown_or_unlisted_types_are_refused(name: str, data: bytes) -> None:
    exc = refused(name, data)
    assert (exc.status, exc.code) == (415, "UNSUPPORTED_TYPE")
    assert "JPEG, PNG or WebP" in exc.message


def test_a_decompression_bomb_is_refused_before_it_is_decoded(monkeypatch: Any) -> None:
    data = f.bomb()
    assert len(data) < 200_000
    decoded: list[Any] = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or real_load(self))
    exc = refused("huge.png", data)
    assert (exc.status, exc.code) == (400, "IMAGE_TOO_LARGE")
    assert decoded == []  # refused from the header alone


def test_an_image_over_our_pixel_limit_but_under_pillows_is_refused(monkeypatch: Any) -> None:
    # 48 megapixels: under Pillow's own guard (89 M), over CHATGATE_MAX_IMAGE_PIXELS (40 M).
    data = f.bomb((8000, 6000))
    decoded: list[Any] = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or real_load(self))
    exc = refused("big.png", data)
    assert (exc.code, decoded) == ("IMAGE_TOO_LARGE", [])
    assert "40" in exc.message


@pytest.mark.parametrize(
    "size",
    [
        (10_000, 10_000),  # 100 M: Pillow's DecompressionBombWarning, taken as an error
        (20_000, 20_000),  # 400 M: Pillow's DecompressionBombError (past 2 x its limit)
    ],
)
def test_pillows_own_bomb_guard_is_an_error_too(settings: Any, size: tuple[int, int]) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "MAX_IMAGE_PIXELS": 10**12}  # ours off
    assert refused("huge.png", f.bomb(size)).code == "IMAGE_TOO_LARGE"


def test_too_large_and_empty_and_damaged_files_are_refused(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "MAX_UPLOAD_BYTES": 1000}
    exc = refused("big.txt", b"a" * 1001)
    assert (exc.status, exc.code) == (413, "TOO_LARGE") and "up to 1000\u00a0bytes" in exc.message
    assert refused("empty.txt", b"").code == "EMPTY_FILE"
    assert refused("cut.png", f.image()[:200]).code == "BAD_FILE"
    assert refused("cut.pdf", b"%PDF-1.4\n" + b"garbage" * 50).code == "BAD_FILE"


# --- stored ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_storing_writes_random_names_and_a_row(store: Path) -> None:
    user = User.objects.create_user("alice")
    conversation = conversations.conversation_create(owner=user, title="t", announce=False)
    checked = attachments.attachment_check(name="alice-photo.png", data=f.image())
    row = attachments.attachment_store(owner=user, conversation=conversation, checked=checked)
    files = f.stored(store)
    assert len(files) == 2
    assert all("alice" not in str(p) for p in files)  # nothing of the name in the path
    assert (store / row.storage_name).read_bytes() == f.image()
    assert (store / row.thumbnail_name).read_bytes() == checked.thumbnail
    assert row.size == len(f.image()) and row.content_type == "image/png"
    assert attachments.attachment_bytes(row, thumbnail=True) == checked.thumbnail


@pytest.mark.django_db
def test_a_failure_after_writing_leaves_nothing_behind(store: Path, monkeypatch: Any) -> None:
    user = User.objects.create_user("alice")
    conversation = conversations.conversation_create(owner=user, title="t", announce=False)
    checked = attachments.attachment_check(name="p.png", data=f.image())

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(Attachment.objects, "create", broken)
    with pytest.raises(RuntimeError):
        attachments.attachment_store(owner=user, conversation=conversation, checked=checked)
    assert f.stored(store) == []


@pytest.mark.django_db
def test_asking_without_an_active_seat_stores_nothing(store: Path) -> None:
    user = User.objects.create_user("alice")
    conversation = conversations.conversation_create(owner=user, title="t", announce=False)
    seat = services.session_open(user=user).session_id
    services.session_close(session_id=seat, reason="user")
    checked = attachments.attachment_check(name="p.png", data=f.image())
    with pytest.raises(services.NotActive):
        attachments.attachment_ask(
            owner=user, seat_id=seat, conversation=conversation, checked=checked, content="q"
        )
    assert f.stored(store) == [] and Attachment.objects.count() == 0
    assert ChatMessage.objects.count() == 0


# --- what reaches the model --------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def emit(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)


def _ask_with(user: Any, seat: str, conversation: Any, name: str, data: bytes, text: str) -> Any:
    checked = attachments.attachment_check(name=name, data=data)
    _row, asked = attachments.attachment_ask(
        owner=user, seat_id=seat, conversation=conversation, checked=checked, content=text
    )
    return asked


@pytest.mark.django_db(transaction=True)
async def test_pdf_and_text_reach_the_model_server_as_context(
    store: Path,
    settings: Any,
    model_server: FakeModelServer,  # noqa: F811
) -> None:
    from channels.db import database_sync_to_async as db

    settings.CHATGATE = {
        **settings.CHATGATE,
        "CHAT_BACKEND": "openai",
        "OPENAI_BASE_URL": model_server.base_url,
    }

    def setup() -> tuple[str, Any]:
        user = User.objects.create_user("alice")
        seat = services.session_open(user=user).session_id
        conversation = conversations.conversation_create(owner=user, title="t", announce=False)
        _ask_with(user, seat, conversation, "notes.txt", f.TEXT, "What day is the launch?")
        return seat, conversation

    seat, conversation = await db(setup)()
    await answering.answer_pending(seat_id=seat, sink=Sink())

    def second() -> None:
        user = User.objects.get(username="alice")
        _ask_with(user, seat, conversation, "r.pdf", f.pdf("Total is 42"), "And the total?")

    await db(second)()
    await answering.answer_pending(seat_id=seat, sink=Sink())
    first, then = (r["body"]["messages"] for r in model_server.requests)
    assert first[-1]["role"] == "user"
    assert first[-1]["content"].startswith("What day is the launch?")
    assert "[Attached file: notes.txt]" in first[-1]["content"]
    assert "The launch is on Tuesday." in first[-1]["content"]
    # The second question carries the PDF's text, and the first turn keeps its file's text.
    assert "Total is 42" in then[-1]["content"] and "[Attached file: r.pdf]" in then[-1]["content"]
    assert "The launch is on Tuesday." in then[0]["content"]
    assert all(isinstance(m["content"], str) for m in then)  # no image parts without images


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("accepts", [True, False])
async def test_images_go_as_image_parts_only_when_the_model_reads_them(
    accepts: bool,
    store: Path,
    settings: Any,
    model_server: FakeModelServer,  # noqa: F811
) -> None:
    from channels.db import database_sync_to_async as db

    settings.CHATGATE = {
        **settings.CHATGATE,
        "CHAT_BACKEND": "openai",
        "OPENAI_BASE_URL": model_server.base_url,
        "BACKEND_ACCEPTS_IMAGES": accepts,
    }
    png = f.image("PNG", (32, 16), "blue")

    def setup() -> str:
        user = User.objects.create_user("alice")
        seat = services.session_open(user=user).session_id
        conversation = conversations.conversation_create(owner=user, title="t", announce=False)
        _ask_with(user, seat, conversation, "blue.png", png, "What colour is this?")
        return seat

    seat = await db(setup)()
    await answering.answer_pending(seat_id=seat, sink=Sink())
    (request,) = model_server.requests
    last = request["body"]["messages"][-1]
    if accepts:
        import base64

        text, image = last["content"]
        assert text == {
            "type": "text",
            "text": "What colour is this?\n\n[Attached image: blue.png]",
        }
        assert image["type"] == "image_url"
        url = image["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == png
    else:
        assert last["content"] == "What colour is this?\n\n[Attached image: blue.png]"
    done = await db(lambda: list(ChatMessage.objects.filter(sender_type="assistant")))()
    assert [m.status for m in done] == ["done"]


@pytest.mark.django_db
def test_history_pages_carry_each_messages_attachments(store: Path) -> None:
    from sessions_app.chat import selectors

    user = User.objects.create_user("alice")
    seat = services.session_open(user=user).session_id
    conversation = conversations.conversation_create(owner=user, title="t", announce=False)
    asked = _ask_with(user, seat, conversation, "p.png", f.image(), "look")
    messages.answer_begin(answer_id=asked.answer.pk)
    messages.answer_finish(answer_id=asked.answer.pk, content="ok", status="done")
    page = selectors.thread_page(conversation=conversation)
    question, answer = page["messages"]
    (file,) = question["attachments"]
    row = Attachment.objects.get()
    assert file == {
        "file_id": str(row.pk),
        "name": "p.png",
        "type": "image/png",
        "size": len(f.image()),
        "file_url": f"/api/chat/files/{row.pk}",
        "thumbnail_url": f"/api/chat/files/{row.pk}/thumbnail",
    }
    assert question["message_type"] == "file"
    assert answer["attachments"] == []
