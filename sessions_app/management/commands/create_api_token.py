"""Issues an API token for a service; the token is printed once and only its hash is kept."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.api import tokens
from sessions_app.management.commands._common import operator_label
from sessions_app.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create an API token for a service client (Authorization: Bearer <token>). The token "
        "is shown once. With --act-for-users it may name any user_id; without, it acts only "
        "for its owner. Revoke tokens in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name, e.g. the service using it.")
        parser.add_argument(
            "--act-for-users",
            action="store_true",
            help="May open, poll and close sessions for any user_id (created on first use).",
        )
        parser.add_argument(
            "--owner",
            help="Username the token belongs to and acts as (default: the first superuser).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("The token name must be 1 to 100 characters.")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(
                f"A token named {name!r} already exists; choose another name "
                "(or revoke the old one in the admin)."
            )
        users = get_user_model()._default_manager
        if options["owner"]:
            owner = users.filter(**{get_user_model().USERNAME_FIELD: options["owner"]}).first()
            if owner is None:
                raise CommandError(f"No user named {options['owner']!r}; create it first.")
        else:
            owner = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
            if owner is None:
                raise CommandError(
                    "No superuser to own the token: pass --owner USERNAME, or run "
                    "`manage.py ensure_admin` first."
                )
        row, raw = tokens.api_token_issue(
            name=name,
            owner=owner,
            can_act_for_users=options["act_for_users"],
            actor=operator_label("create_api_token"),
        )
        scope = "any user_id" if row.can_act_for_users else f"only {owner.get_username()}"
        self.stdout.write(
            self.style.SUCCESS(f"Created token {row.name!r} (owner {owner.get_username()}, ")
            + self.style.SUCCESS(f"acts for {scope}). Shown once; store it now:")
        )
        self.stdout.write(raw)
