"""The admin pages of conversations and messages (chat/admin.py): listed, searchable, read-only,
in Korean for Korean staff."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from sessions_app.chat import messages
from sessions_app.gate import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="x"))
    return client


def test_conversations_and_messages_are_browsable_and_read_only(staff):
    alice = User.objects.create_user("alice")
    seat = services.session_open(user=alice).session_id
    asked = messages.message_ask(owner=alice, seat_id=seat, content="제주 여행 계획")
    conv = asked.conversation
    listing = staff.get("/admin/sessions_app/conversation/", {"q": "제주"})
    assert listing.status_code == 200 and "제주 여행 계획" in listing.content.decode()
    page = staff.get(f"/admin/sessions_app/conversation/{conv.pk}/change/")
    assert page.status_code == 200 and "제주 여행 계획" in page.content.decode()
    assert staff.get("/admin/sessions_app/chatmessage/", {"q": "alice"}).status_code == 200
    msg = staff.get(f"/admin/sessions_app/chatmessage/{asked.question.pk}/change/")
    assert msg.status_code == 200
    assert staff.get("/admin/sessions_app/conversation/add/").status_code == 403
    assert staff.post(f"/admin/sessions_app/conversation/{conv.pk}/delete/").status_code == 403
    assert (
        staff.post(f"/admin/sessions_app/chatmessage/{asked.question.pk}/delete/").status_code
        == 403
    )
    korean = staff.get("/admin/sessions_app/conversation/", HTTP_ACCEPT_LANGUAGE="ko")
    assert "대화" in korean.content.decode()
