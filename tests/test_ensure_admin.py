"""The login line `make run` prints names the address it really serves (HOST and PORT)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "http://127.0.0.1:8000/accounts/login/"),
        ("0.0.0.0", "8123", "http://127.0.0.1:8123/accounts/login/"),
        ("::1", "9000", "http://[::1]:9000/accounts/login/"),
    ],
)
def test_login_line_shows_the_real_port(monkeypatch, host, port, expected) -> None:
    for name, value in (("HOST", host), ("PORT", port)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    first, again = io.StringIO(), io.StringIO()
    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=again)  # the second run only says where to log in
    assert expected in first.getvalue()
    assert expected in again.getvalue()
