"""Files over the conversations API: `POST /api/chat/sessions/<id>/files` and owner-only serving
at `/api/chat/files/<id>` (+ `/thumbnail`), through Django's test client with CSRF enforced on
the real database; then an upload with a question sent to a real daphne, answered with the
person's page open and with no page at all. Every refusal leaves the storage folder and the
table empty."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from sessions_app.chat import conversations
from sessions_app.gate import services
from sessions_app.models import ApiToken, Attachment, ChatMessage
from tests import attachment_files as f
from tests.chat_http import login_cookie_for, person
from tests.live import DaphneServer, start_daphne
from tests.test_chat_api import Browser
from tests.test_chat_live import next_of, open_ws

API = "/api/chat"


@pytest.fixture
def alice(db: None) -> Browser:
    return Browser(User.objects.create_user("alice", password="x"))


@pytest.fixture
def bob(db: None) -> Browser:
    return Browser(User.objects.create_user("bob", password="x"))


@pytest.fixture
def store(settings: Any, tmp_path: Path) -> Path:
    return f.use_store(settings, tmp_path)


def new_conversation(who: Browser) -> str:
    return str(conversations.conversation_create(owner=who.user, title="t", announce=False).pk)


def upload(
    who: Browser, conversation: str, name: str, data: bytes, csrf: bool = True, **fields: str
) -> Any:
    body: dict[str, Any] = {"file": SimpleUploadedFile(name, data, "application/octet-stream")}
    body.update(fields)
    return who.client.post(
        f"{API}/sessions/{conversation}/files", body, **(who.csrf if csrf else {})
    )


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()["error"]
    return body


def nothing_stored(root: Path) -> None:
    assert f.stored(root) == []
    assert Attachment.objects.count() == 0


# --- accepted and served -----------------------------------------------------------------------


def test_an_image_is_stored_and_served_to_its_owner_with_a_thumbnail(alice, store) -> None:
    conversation = new_conversation(alice)
    png = f.image()
    r = upload(alice, conversation, "사진.png", png)
    assert r.status_code == 201, r.content
    body = r.json()
    row = Attachment.objects.get()
    assert body == {
        "file_id": str(row.pk),
        "file_url": f"/api/chat/files/{row.pk}",
        "thumbnail_url": f"/api/chat/files/{row.pk}/thumbnail",
        "message_id": None,
        "session_id": conversation,
        "file_info": {"name": "사진.png", "type": "image/png", "size": len(png)},
    }
    served = alice.client.get(body["file_url"])
    assert served.status_code == 200 and served.content == png
    assert served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Content-Disposition"].startswith("inline")
    assert "filename*=utf-8''%EC%82%AC%EC%A7%84.png" in served["Content-Disposition"]
    thumb = alice.client.get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/webp"
    assert thumb.content[:4] == b"RIFF" and thumb.content[8:12] == b"WEBP"
    assert len(f.stored(store)) == 2


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("report.pdf", f.pdf(), "application/pdf"),
        ("notes.txt", f.TEXT, "text/plain; charset=utf-8"),
    ],
)
def test_documents_download_as_attachments_without_a_thumbnail(
    alice, store, name: str, data: bytes, content_type: str
) -> None:
    r = upload(alice, new_conversation(alice), name, data)
    assert r.status_code == 201, r.content
    assert r.json()["thumbnail_url"] is None
    served = alice.client.get(r.json()["file_url"])
    assert served.status_code == 200 and served.content == data
    assert served["Content-Type"] == content_type
    assert served["Content-Disposition"] == f'attachment; filename="{name}"'
    assert served["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served["Content-Security-Policy"]
    assert error(alice.client.get(r.json()["file_url"] + "/thumbnail"), 404)["code"] == "NOT_FOUND"


def test_a_token_uploads_for_its_owner(alice, store) -> None:
    _row, raw = ApiToken.issue(name="svc", owner=alice.user)
    client = Client(enforce_csrf_checks=True)
    conversation = new_conversation(alice)
    r = client.post(
        f"{API}/sessions/{conversation}/files",
        {"file": SimpleUploadedFile("a.txt", b"hello")},
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert r.status_code == 201, r.content
    got = client.get(r.json()["file_url"], HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert got.status_code == 200 and got.content == b"hello"


def test_a_service_token_uploads_for_the_person_it_names(alice, bob, store) -> None:
    """`?user_id=` works on the files endpoints as on every /api/chat/ call: a token with the
    act-for-users right uploads into, and reads back from, the person's conversation; a token
    without it may not name anyone else."""
    service = User.objects.create_user("svc-owner")
    _row, raw = ApiToken.issue(name="svc", owner=service, can_act_for_users=True)
    client = Client(enforce_csrf_checks=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    conversation = new_conversation(alice)
    path = f"{API}/sessions/{conversation}/files"
    r = client.post(f"{path}?user_id=alice", {"file": SimpleUploadedFile("a.txt", b"hi")}, **auth)
    assert r.status_code == 201, r.content
    assert Attachment.objects.get().owner == alice.user
    got = client.get(f"{r.json()['file_url']}?user_id=alice", **auth)
    assert got.status_code == 200 and got.content == b"hi"
    assert client.get(f"{r.json()['file_url']}?user_id=bob", **auth).status_code == 404
    assert client.get(r.json()["file_url"], **auth).status_code == 404  # the token's own owner
    _row, plain = ApiToken.issue(name="plain", owner=bob.user)
    refused = client.post(
        f"{path}?user_id=alice",
        {"file": SimpleUploadedFile("b.txt", b"no")},
        HTTP_AUTHORIZATION=f"Bearer {plain}",
    )
    assert error(refused, 403)["code"] == "FORBIDDEN"
    assert Attachment.objects.count() == 1


# --- whose files -------------------------------------------------------------------------------


def test_another_persons_conversation_and_files_are_404(alice, bob, store) -> None:
    conversation = new_conversation(alice)
    r = upload(alice, conversation, "a.png", f.image())
    file_url, thumb_url = r.json()["file_url"], r.json()["thumbnail_url"]
    assert error(bob.client.get(file_url), 404)["code"] == "NOT_FOUND"
    assert error(bob.client.get(thumb_url), 404)["code"] == "NOT_FOUND"
    before = f.stored(store)
    assert error(upload(bob, conversation, "b.png", f.image()), 404)["code"] == "NOT_FOUND"
    assert f.stored(store) == before and Attachment.objects.count() == 1
    # An id that is not one, or no file at all, looks the same.
    assert error(alice.client.get(f"{API}/files/not-a-uuid"), 404)["code"] == "NOT_FOUND"
    missing = "00000000-0000-4000-8000-000000000000"
    assert error(alice.client.get(f"{API}/files/{missing}"), 404)["code"] == "NOT_FOUND"
    assert error(upload(alice, "nope", "a.png", f.image()), 404)["code"] == "NOT_FOUND"


def test_a_deleted_conversations_files_are_gone_for_the_owner(alice, store) -> None:
    conversation = new_conversation(alice)
    url = upload(alice, conversation, "a.png", f.image()).json()["file_url"]
    conversations.conversation_delete(owner=alice.user, conversation_id=conversation)
    assert error(alice.client.get(url), 404)["code"] == "NOT_FOUND"


def test_anonymous_and_missing_csrf_are_refused_and_nothing_is_stored(alice, store) -> None:
    conversation = new_conversation(alice)
    anonymous = Client(enforce_csrf_checks=True)
    r = anonymous.post(
        f"{API}/sessions/{conversation}/files", {"file": SimpleUploadedFile("a.txt", b"x")}
    )
    assert error(r, 401)["code"] == "UNAUTHENTICATED"
    assert error(upload(alice, conversation, "a.txt", b"x", csrf=False), 403)["code"] == (
        "CSRF_FAILED"
    )
    url = upload(alice, conversation, "a.txt", b"x").json()["file_url"]
    Attachment.objects.all().delete()  # the row gone: its bytes are not reachable either
    assert error(anonymous.get(url), 401)["code"] == "UNAUTHENTICATED"


# --- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("cat.png", f.pdf(), 415, "TYPE_MISMATCH"),
        ("page.txt", f.HTML, 415, "UNSUPPORTED_TYPE"),
        ("archive.zip", f.ZIP, 415, "UNSUPPORTED_TYPE"),
        ("huge.png", f.bomb(), 400, "IMAGE_TOO_LARGE"),
        ("empty.txt", b"", 400, "EMPTY_FILE"),
    ],
)
def test_refused_files_store_nothing(alice, store, name, data, status, code) -> None:
    body = error(upload(alice, new_conversation(alice), name, data), status)
    assert body["code"] == code
    if status == 415:
        assert "JPEG, PNG or WebP" in body["message"]
    nothing_stored(store)


def test_a_file_over_the_limit_is_413_and_no_part_of_it_is_kept(alice, store, settings) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "MAX_UPLOAD_BYTES": 1000}
    conversation = new_conversation(alice)
    # Declared small enough to be read: the upload handler stops at byte 1000.
    body = error(upload(alice, conversation, "big.txt", b"a" * 5000), 413)
    assert body["code"] == "TOO_LARGE" and "1000\u00a0bytes" in body["message"]
    nothing_stored(store)
    # Declared far over the limit: refused before the body is parsed.
    body = error(upload(alice, conversation, "huge.txt", b"a" * 400_000), 413)
    assert body["code"] == "TOO_LARGE"
    nothing_stored(store)


def test_the_default_limit_is_ten_megabytes(alice, store) -> None:
    conversation = new_conversation(alice)
    just = b"a" * (10 * 1024 * 1024)
    assert upload(alice, conversation, "ok.txt", just).status_code == 201
    assert error(upload(alice, conversation, "over.txt", just + b"a"), 413)["code"] == "TOO_LARGE"
    assert Attachment.objects.count() == 1


def test_bad_requests(alice, store) -> None:
    conversation = new_conversation(alice)
    url = f"{API}/sessions/{conversation}/files"
    no_file = alice.client.post(url, {"message": "hi"}, **alice.csrf)
    assert "`file`" in error(no_file, 400)["message"]
    as_json = alice.client.post(
        url, json.dumps({"file": "x"}), content_type="application/json", **alice.csrf
    )
    assert error(as_json, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert error(alice.client.get(url), 405)["code"] == "METHOD_NOT_ALLOWED"
    many = {f"file{i}": SimpleUploadedFile(f"{i}.txt", b"x") for i in range(101)}
    too_many = alice.client.post(url, many, **alice.csrf)  # over DATA_UPLOAD_MAX_NUMBER_FILES
    assert "multipart" in error(too_many, 400)["message"]
    blank = upload(alice, conversation, "a.txt", b"x", message="   ")
    assert error(blank, 400)["code"] == "BAD_REQUEST"
    nothing_stored(store)


# --- with a question ---------------------------------------------------------------------------


def test_with_a_message_but_no_seat_is_409_and_nothing_is_stored(alice, bob, store) -> None:
    conversation = new_conversation(alice)
    r = upload(alice, conversation, "a.png", f.image(), message="what is this?")
    body = error(r, 409)
    assert body["code"] == "NOT_ACTIVE" and body["state"] == "none"
    services.limits_set(actor=None, max_active_sessions=1)
    services.session_open(user=bob.user)  # bob takes the only seat
    services.session_open(user=alice.user)  # alice waits, first in line
    body = error(upload(alice, conversation, "a.png", f.image(), message="what is this?"), 409)
    assert body["state"] == "queued" and body["position"] == 1
    assert "eta_seconds" in body
    nothing_stored(store)
    assert ChatMessage.objects.count() == 0


def test_with_a_message_and_a_seat_the_question_carries_the_file(alice, store) -> None:
    services.session_open(user=alice.user)
    conversation = new_conversation(alice)
    r = upload(alice, conversation, "a.png", f.image(), message="what is this?")
    assert r.status_code == 201, r.content
    question = ChatMessage.objects.get(pk=r.json()["message_id"])
    assert question.content == "what is this?" and question.message_type == "file"
    assert question.sender_type == "user" and str(question.conversation_id) == conversation
    answer = ChatMessage.objects.get(parent=question)
    assert answer.status == "pending"  # the seat's answering loop picks it up
    page = alice.get(f"/sessions/{conversation}/messages").json()
    (shown,) = [m for m in page["messages"] if m["message_id"] == question.pk]
    assert shown["attachments"][0]["file_id"] == r.json()["file_id"]


def _live_upload(server: DaphneServer, who: Any, name: str, data: bytes, message: str) -> Any:
    """An upload with a question over a real daphne, as a program with a token sends it."""
    return httpx.post(
        f"{server.url}{API}/sessions/{who.conversation_id}/files",
        headers=who.auth,
        files={"file": (name, data, "application/octet-stream")},
        data={"message": message},
        timeout=20,
    )


async def _answer_of(question_id: int, timeout: float = 20) -> ChatMessage:
    deadline = time.monotonic() + timeout
    while True:
        answer = await database_sync_to_async(
            lambda: ChatMessage.objects.filter(parent_id=question_id).first()
        )()
        if answer is not None and answer.status not in ("pending", "streaming"):
            return answer
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_an_upload_with_a_question_is_answered_on_the_open_page(
    tmp_path: Path, transactional_db: None
) -> None:
    server = start_daphne(tmp_path, CHATGATE_UPLOAD_ROOT=str(tmp_path / "uploads"))
    try:
        alice = await database_sync_to_async(person)("alice")
        page = await open_ws(server, await database_sync_to_async(login_cookie_for)(alice.user))
        await next_of(page, "queue.status")
        r = await asyncio.to_thread(
            _live_upload, server, alice, "blue.png", f.image(), "무슨 색인가요?"
        )
        assert r.status_code == 201, r.text
        frame = await next_of(page, "message")
        assert frame["message_id"] == r.json()["message_id"]
        assert frame["conversation_id"] == alice.conversation_id
        assert frame["content"] == "무슨 색인가요?"
        (file,) = frame["attachments"]
        assert file["file_id"] == r.json()["file_id"] and file["name"] == "blue.png"
        assert file["thumbnail_url"] == r.json()["thumbnail_url"]
        start = await next_of(page, "stream_start")
        assert start["message_id"] == frame["answer_id"]
        end = await next_of(page, "stream_end", timeout=20)
        assert end["status"] == "done"
        answer = await database_sync_to_async(ChatMessage.objects.get)(pk=frame["answer_id"])
        assert "[Attached image: blue.png]" in answer.content  # echo: what the model was given
        await page.close()
    finally:
        server.stop()


@pytest.mark.timeout(120)
async def test_an_upload_with_a_question_is_answered_with_no_page_open(
    tmp_path: Path, transactional_db: None
) -> None:
    """A program uploads a report and asks about it, with no page anywhere: the answer is still
    generated (this process's runner, chat/runner.py) and recorded, using the file's text."""
    server = start_daphne(tmp_path, CHATGATE_UPLOAD_ROOT=str(tmp_path / "uploads"))
    try:
        alice = await database_sync_to_async(person)("alice")
        await database_sync_to_async(services.session_open)(user=alice.user, via="api")
        r = await asyncio.to_thread(
            _live_upload, server, alice, "notes.txt", b"PAPAYA 42", "요약해 주세요"
        )
        assert r.status_code == 201, r.text
        answer = await _answer_of(r.json()["message_id"])
        assert answer.status == "done"
        assert "PAPAYA 42" in answer.content  # echo: the file's text reached the model
    finally:
        server.stop()


def test_staff_see_attachments_in_the_admin_read_only(alice, store) -> None:
    upload(alice, new_conversation(alice), "보고서.pdf", f.pdf())
    staff = User.objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/sessions_app/attachment/")
    assert listing.status_code == 200
    assert "보고서.pdf" in listing.content.decode()
    row = Attachment.objects.get()
    page = client.get(f"/admin/sessions_app/attachment/{row.pk}/change/")
    assert page.status_code == 200 and "PAPAYA" not in page.content.decode()  # no file text
    assert client.get("/admin/sessions_app/attachment/add/").status_code == 403


def test_uploads_share_the_chat_rate(alice, store, settings) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "CHAT_RATE_PER_MINUTE": 1}
    conversation = new_conversation(alice)
    assert upload(alice, conversation, "a.txt", b"one").status_code == 201
    second = upload(alice, conversation, "b.txt", b"two")
    assert error(second, 429)["code"] == "RATE_LIMIT"
    assert int(second["Retry-After"]) >= 1
    assert Attachment.objects.count() == 1
