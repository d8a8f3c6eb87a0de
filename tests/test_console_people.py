"""Find a person on the console: by username, name or e-mail, with their live state (active,
queued at N, none), the same actions as the tables, and their recent sessions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sessions_app.gate import services
from sessions_app.models import ChatSession

pytestmark = pytest.mark.django_db(transaction=True)


def person(username: str, **extra: str):
    return get_user_model().objects.create_user(username=username, **extra)


def card(html: str, username: str) -> str:
    match = re.search(rf'<section[^>]*data-person="{re.escape(username)}".*?</section>', html, re.S)
    assert match, f"no card for {username}"
    return match.group(0)


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="lead", password="pw"))
    return client


def test_search_shows_live_state_actions_and_history(staff_client: Client) -> None:
    services.limits_set(actor=None, max_active_sessions=1)
    ann = person("ann", first_name="Ann", last_name="Lee", email="ann@example.org")
    bob = person("bob", email="bob@corp.example")
    cat = person("cat", last_name="Kim")
    services.session_open(user=ann, via="api")
    first = services.session_open(user=cat, via="api")  # queued behind ann
    assert first.state == "queued"
    services.session_close(session_id=first.session_id, reason=ChatSession.Reason.USER)
    services.session_open(user=cat, via="api")
    bob_seat = services.session_open(user=bob, via="api")
    assert bob_seat.state == "queued"

    html = staff_client.get("/console/people/", {"q": "ann@example"}).content.decode()
    ann_card = card(html, "ann")
    assert "active" in ann_card and "Close…" in ann_card

    html = staff_client.get("/console/people/", {"q": "kim"}).content.decode()
    cat_card = card(html, "cat")
    assert "queued at 1" in cat_card
    assert "Admit now…" in cat_card and "To front…" in cat_card
    assert "Left" in cat_card  # the earlier seat, and how it ended

    html = staff_client.get("/console/people/", {"q": "corp.example"}).content.decode()
    assert "queued at 2" in card(html, "bob")

    person("dan")
    html = staff_client.get("/console/people/", {"q": "dan"}).content.decode()
    assert "no live session" in card(html, "dan")
    assert "No sessions yet." in card(html, "dan")

    html = staff_client.get("/console/people/", {"q": "nobody-here"}).content.decode()
    assert "Nobody matches." in html
    assert staff_client.get("/console/people/", {"q": "x" * 5000}).status_code == 200


def test_search_is_staff_only_and_actions_need_steer() -> None:
    person("ann")
    assert Client().get("/console/people/", {"q": "ann"}).status_code == 302  # to the login
    client = Client()
    client.force_login(person("someone"))
    assert client.get("/console/people/", {"q": "ann"}).status_code == 403
    viewer = person("viewer", is_staff=True)
    services.session_open(user=get_user_model().objects.get(username="ann"), via="api")
    client.force_login(viewer)
    html = client.get("/console/people/", {"q": "ann"}).content.decode()
    assert "Close…" not in card(html, "ann")
