"""The chat page's routes (views/chat.py): `/c/<uuid>/` opens one of the person's conversations
(404 for anyone else's, or a deleted one), the page context the template relies on, and where
a login lands (staff on the console, everyone else on the chat page)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from sessions_app import conf
from sessions_app.chat import conversations

pytestmark = pytest.mark.django_db


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_conversation_page_opens_the_persons_conversation():
    alice = User.objects.create_user("alice")
    conv = conversations.conversation_create(owner=alice, title="Jeju")
    r = logged_in(alice).get(f"/c/{conv.pk}/")
    assert r.status_code == 200
    assert r.context["conversation"] == conv
    assert r.context["max_message_chars"] == int(conf.get("MAX_MESSAGE_CHARS"))
    assert r.context["is_staff"] is False and "strings" in r.context
    home = logged_in(alice).get("/")
    assert home.status_code == 200 and home.context["conversation"] is None


def test_conversation_page_is_404_for_others_and_deleted():
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    conv = conversations.conversation_create(owner=alice, title="mine")
    assert logged_in(bob).get(f"/c/{conv.pk}/").status_code == 404
    conversations.conversation_delete(owner=alice, conversation_id=conv.pk)
    assert logged_in(alice).get(f"/c/{conv.pk}/").status_code == 404
    assert logged_in(alice).get("/c/not-a-uuid/").status_code == 404
    anon = Client().get(f"/c/{conv.pk}/")
    assert anon.status_code == 302 and "/accounts/login/" in anon["Location"]


@pytest.mark.parametrize(("staff", "landing"), [(True, "/console/"), (False, "/")])
def test_login_lands_staff_on_the_console(staff, landing):
    User.objects.create_user("pat", password="pw-12345", is_staff=staff)
    client = Client()
    r = client.post("/accounts/login/", {"username": "pat", "password": "pw-12345"}, follow=True)
    assert r.redirect_chain[-1][0] == landing
    # `next` still wins.
    client.logout()
    r = client.post("/accounts/login/?next=/c/x/", {"username": "pat", "password": "pw-12345"})
    assert r["Location"] == "/c/x/"
