"""The admin in Korean: every page of our models titled and labelled in Korean, with no
untranslated model or field name left, and Django's awkward generic titles replaced."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import translation

from sessions_app.alerts import alert_thresholds_set
from sessions_app.chat import messages
from sessions_app.gate import services
from sessions_app.models import ApiToken, GateSettings

pytestmark = pytest.mark.django_db(transaction=True)

OURS = [m for m in admin.site._registry if m._meta.app_label == "sessions_app"]
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def english_names() -> set[str]:
    """Every model and field name of ours as Django would print it untranslated."""
    names: set[str] = set()
    with translation.override("en"):
        names.add(str(apps.get_app_config("sessions_app").verbose_name))
        for model in OURS:
            names.add(str(model._meta.verbose_name))
            names.add(str(model._meta.verbose_name_plural))
            for field in model._meta.get_fields():
                if getattr(field, "verbose_name", None) and not field.auto_created:
                    names.add(str(field.verbose_name))
                for _value, label in getattr(field, "choices", None) or []:
                    names.add(str(label))
    # Labels that read the same in both languages.
    return {n for n in names if n not in {"ID", "id", "API", "chatgate"}}


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<[^>]+>", "\n", html)
    return html


@pytest.fixture
def korean_admin() -> Client:
    user = get_user_model().objects.create_superuser(username="관리자", password="pw")
    person = get_user_model().objects.create_user(username="kim")
    seat = services.session_open(user=person, via="api")
    messages.message_ask(owner=person, seat_id=seat.session_id, content="안녕하세요")
    GateSettings.load()
    alert_thresholds_set(actor=user, queue_length=5)
    ApiToken.issue(name="svc", owner=user)
    client = Client(headers={"accept-language": "ko"})
    client.cookies["django_language"] = "ko"
    client.force_login(user)
    return client


def test_admin_pages_have_no_untranslated_names(korean_admin: Client) -> None:
    names = english_names()
    pages = ["/admin/", "/admin/sessions_app/"]
    for model in OURS:
        opts = model._meta
        pages.append(f"/admin/{opts.app_label}/{opts.model_name}/")
        row = model._default_manager.first()
        if row is not None:
            pages.append(f"/admin/{opts.app_label}/{opts.model_name}/{row.pk}/change/")
    for url in pages:
        response = korean_admin.get(url, follow=True)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'lang="ko"' in html, url
        lines = {line.strip() for line in visible_text(html).splitlines() if line.strip()}
        leftovers = sorted(line for line in lines for name in names if line.lower() == name.lower())
        assert not leftovers, f"{url}: untranslated {leftovers}"
        title = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
        assert title and HANGUL.search(title.group(1)), (url, title and title.group(1))
        assert "보기위한" not in html and "변경할" not in (title.group(1) if title else ""), url


def test_session_list_headers_and_filters_read_korean(korean_admin: Client) -> None:
    html = korean_admin.get("/admin/sessions_app/chatsession/").content.decode()
    for label in ("종료 사유", "구분", "상태", "CSV로 내보내기", "상태별", "채팅 게이트"):
        assert label in html, label
