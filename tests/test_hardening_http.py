"""Issue 8 over HTTP: inputs that crashed the API (item 5), what `/healthz` tells strangers
(item 7), and CSRF failures on JSON endpoints (item 10). Every answer is JSON with the right
status, never a 500 and never an HTML page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

from sessions_app.gate import admission
from sessions_app.models import ApiToken

pytestmark = pytest.mark.django_db
API = "/api/v1"


def make_user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username=username, password="pw-123456!", **extra)


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body: dict[str, Any] = json.loads(response.content)["error"]
    return body


@pytest.fixture
def bearer() -> dict[str, str]:
    owner = make_user("svc-owner")
    _row, raw = ApiToken.issue(name="svc", owner=owner, can_act_for_users=True)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


# --- item 5: inputs that crashed -----------------------------------------------------------


def test_deeply_nested_json_is_a_400(bearer: dict[str, str]) -> None:
    response = Client().post(f"{API}/session/create", "[" * 1000, "application/json", **bearer)
    assert response.status_code == 400
    assert error_of(response)["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("raw", ["%C2%B2", "%D9%A3", "-1", "0", "99999999999999999999999"])
def test_a_limit_that_is_not_a_plain_number_is_a_400(bearer: dict[str, str], raw: str) -> None:
    # "²".isdigit() and "٣".isdigit() are True, but int("²") raises.
    response = Client().get(f"{API}/session/status?limit={raw}", **bearer)
    assert response.status_code == 400
    assert error_of(response)["code"] == "BAD_REQUEST"


def test_a_form_body_over_the_upload_cap_in_the_csrf_check_is_a_json_error() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    body = "x=" + "a" * (70 * 1024)
    response = client.post(
        f"{API}/session/create",
        body,
        "application/x-www-form-urlencoded",
        HTTP_X_CSRFTOKEN=secret,
    )
    assert response.status_code in (400, 413)
    assert error_of(response)["code"] == "TOO_LARGE"


def test_a_multipart_body_with_a_bad_boundary_is_a_json_400() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    response = client.generic(
        "POST",
        f"{API}/session/create",
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n",
        content_type="multipart/form-data; boundary=\x01bad boundary\x7f" + "b" * 80,
        HTTP_X_CSRFTOKEN=secret,
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "BAD_REQUEST"


def test_a_fullwidth_twin_of_an_existing_name_is_a_clear_400(bearer: dict[str, str]) -> None:
    make_user("w0002")
    response = Client().post(
        f"{API}/session/create", json.dumps({"user_id": "ｗ0002"}), "application/json", **bearer
    )
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "BAD_REQUEST"
    assert "w0002" in error["message"]  # says which spelling to use
    assert get_user_model().objects.filter(username__in=["w0002", "ｗ0002"]).count() == 1


@pytest.mark.parametrize("kind", ["large", "multipart"])
def test_unreadable_bodies_on_chat_json_endpoints_answer_json(kind: str) -> None:
    # Refused by Django's CSRF middleware before the view runs (handler400).
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    if kind == "large":
        body, content_type = b"x=" + b"a" * 70_000, "application/x-www-form-urlencoded"
    else:
        body, content_type = b"--x\r\n", "multipart/form-data; boundary=\x01bad"
    response = client.generic(
        "POST", "/chat/session", body, content_type=content_type, HTTP_X_CSRFTOKEN=secret
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == ("TOO_LARGE" if kind == "large" else "BAD_REQUEST")


# --- item 7: /healthz tells strangers the status only --------------------------------------


class _DownManager:
    def ping(self) -> None:
        raise admission.GateUnavailable("Error 111 connecting to 127.0.0.1:6530. Refused.")


def test_healthz_hides_the_redis_address_from_anonymous_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sessions_app.views.health.get_manager", lambda: _DownManager())
    anonymous = Client().get("/healthz")
    assert anonymous.status_code == 503
    assert anonymous["Retry-After"] == "5"
    body = anonymous.json()
    assert body["status"] == "unavailable"
    assert "127.0.0.1" not in anonymous.content.decode()
    assert "6530" not in anonymous.content.decode()
    assert body["problems"] == {"redis": "unavailable"}

    staff = Client()
    staff.force_login(make_user("op", is_staff=True))
    detailed = staff.get("/healthz")
    assert detailed.status_code == 503
    assert "127.0.0.1:6530" in detailed.json()["problems"]["redis"]


# --- item 10: CSRF failures on JSON endpoints answer JSON ----------------------------------


@pytest.mark.parametrize("path", ["/chat/session", "/chat/leave"])
def test_csrf_failure_on_chat_json_endpoints_is_json_403(path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    response = client.post(path)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "CSRF_FAILED"


def test_csrf_failure_on_a_page_form_is_still_the_html_page() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
