"""Makes sure someone can log in the first time, and says how (used by `make run`)."""

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def login_url() -> str:
    """Where `make run` serves (its HOST and PORT), as a browser on this machine reaches it."""
    host = os.environ.get("HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: this machine is still loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('PORT', '8000')}/accounts/login/"


class Command(BaseCommand):
    help = (
        "Create a staff superuser if none exists: DJANGO_SUPERUSER_USERNAME / _PASSWORD / _EMAIL "
        "when set, else 'admin' with a generated password printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        existing = users.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            self.stdout.write(
                f"Log in at {login_url()} as "
                f"'{existing.get_username()}' (staff console: /console/)."
            )
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        users.create_superuser(username=username, email=email, password=password)
        shown = (
            "(from DJANGO_SUPERUSER_PASSWORD)"
            if os.environ.get("DJANGO_SUPERUSER_PASSWORD")
            else password
        )
        self.stdout.write(
            self.style.SUCCESS(
                "First run: created the staff account\n"
                f"  username: {username}\n  password: {shown}\n"
                "  (shown once; change it in /admin/)\n"
                f"Log in at {login_url()} — console at /console/."
            )
        )
