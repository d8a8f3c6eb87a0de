"""A load rehearsal against a running server: N simulated people queue, chat and leave.

Two ways to be a person, both real clients of the running server:

* `--chat` (the full rehearsal): each person logs in (the command mints a Django login
  session for `sim-<run>-<n>` in the shared database, as the test client's force_login does:
  no password hashing, so 2,000 people log in in a second), opens the chat socket
  `/ws/chat/` — which queues them and pushes their live position — sends one message when
  admitted, waits for the streamed answer, holds the seat for `--think` seconds and sends
  `leave`. This needs the server's database (loopback, same settings).
* JSON API (the default; works against any server you hold a token for): a bearer token
  with act-for-users opens a session for each person (provisioned on first use), they poll
  their position every `--poll` seconds while queued, hold their seat for `--think` seconds
  once admitted, and close it. No chat is sent: the JSON API has no chat endpoint.

Bounded on purpose: at most MAX_PEOPLE people, at most `--duration` seconds (then everyone
still waiting leaves and counts as not served), and loopback only unless --allow-remote.
The token (used for the API people and for the progress line in both modes) comes from
--token or CHATGATE_SIM_TOKEN; without one, a temporary token is issued in this database
(the server must share it) and revoked at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.api import tokens
from sessions_app.management.commands._common import operator_label
from sessions_app.management.rehearsal import (
    MAX_DURATION,
    MAX_PEOPLE,
    SIM_OWNER,
    Person,
    Rehearsal,
    Tally,
    is_loopback,
    percentile,
)


class Command(BaseCommand):
    help = (
        "Load rehearsal against a running server (loopback by default): N simulated people "
        "queue through the JSON API, hold their seat for --think seconds, and leave. Prints "
        "progress every second, then admitted / waited / wait p50, p90, max / errors."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("people", type=int, help=f"How many people (1-{MAX_PEOPLE}).")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="The server (http://127.0.0.1:8000)."
        )
        parser.add_argument(
            "--duration",
            type=float,
            default=120.0,
            help="Stop after this many seconds; people still waiting leave (120).",
        )
        parser.add_argument(
            "--think", type=float, default=2.0, help="Seconds each person chats once admitted (2)."
        )
        parser.add_argument(
            "--poll",
            type=float,
            default=2.0,
            help="Seconds between position polls while queued (2; must stay below the grace).",
        )
        parser.add_argument(
            "--ramp", type=float, default=0.0, help="Spread arrivals over this many seconds (0)."
        )
        parser.add_argument(
            "--token",
            default=os.environ.get("CHATGATE_SIM_TOKEN", ""),
            help="A bearer token with act-for-users (default $CHATGATE_SIM_TOKEN; else a "
            "temporary one is issued in this database and revoked afterwards).",
        )
        parser.add_argument(
            "--chat",
            action="store_true",
            help="Log people in and drive the chat socket (queue, one message, leave); "
            "needs the server's database.",
        )
        parser.add_argument(
            "--allow-remote",
            action="store_true",
            help="Allow a non-loopback --url (you are load-testing someone's server).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["people"]
        if not 1 <= count <= MAX_PEOPLE:
            raise CommandError(f"people must be from 1 to {MAX_PEOPLE}.")
        if not 0 < options["duration"] <= MAX_DURATION:
            raise CommandError(f"--duration must be from 1 to {MAX_DURATION} seconds.")
        if options["think"] < 0 or options["ramp"] < 0 or options["poll"] <= 0:
            raise CommandError("--think and --ramp must be >= 0 and --poll > 0 seconds.")
        url = options["url"]
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise CommandError(f"--url must be an http(s) URL, not {url!r}.")
        if not is_loopback(url) and not options["allow_remote"]:
            raise CommandError(
                f"{url} is not a loopback address; pass --allow-remote if you mean to "
                "load-test another machine."
            )
        self._check_reachable(url)

        token, temporary_id = options["token"], None
        if not token:
            token, temporary_id = self._temporary_token()
        run = uuid.uuid4().hex[:6]
        people = [Person(username=f"sim-{run}-{i:04d}") for i in range(count)]
        if options["chat"]:
            self._log_in(people)
        rehearsal = Rehearsal(
            base=url,
            token=token,
            people=people,
            think=options["think"],
            poll=options["poll"],
            ramp=options["ramp"],
            duration=options["duration"],
            progress=lambda line: (self.stdout.write(line), self.stdout.flush()),
            chat=options["chat"],
            cookie_name=settings.SESSION_COOKIE_NAME,
        )
        self.stdout.write(
            f"Rehearsal {run}: {count} people {'chatting' if options['chat'] else 'via the API'} "
            f"against {url}, think {options['think']:g}s, "
            f"poll {options['poll']:g}s, at most {options['duration']:g}s."
        )
        try:
            asyncio.run(rehearsal.run())
        except KeyboardInterrupt:
            self.stdout.write(self.style.WARNING("Interrupted; the figures so far:"))
        finally:
            if options["chat"]:
                self._log_out(people)
            if temporary_id is not None:
                tokens.api_token_revoke(
                    token_id=temporary_id, actor=operator_label("simulate_users")
                )
        elapsed = time.monotonic() - rehearsal.started
        self.report = self._report(people, rehearsal.tally, elapsed)
        self._print(self.report)
        if self.report["errors"]:
            raise CommandError(
                f"{self.report['errors']} errors during the rehearsal: {self.report['by_error']}"
            )

    def _check_reachable(self, url: str) -> None:
        try:
            httpx.get(url.rstrip("/") + "/api/v1/openapi.json", timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            raise CommandError(
                f"No chatgate answers at {url} ({exc}). Start one (make run) or pass --url."
            ) from exc

    def _log_in(self, people: list[Person]) -> None:
        """Creates the people (no usable password) and a login session for each."""
        User = get_user_model()
        names = [p.username for p in people]
        User._default_manager.bulk_create(
            [User(**{User.USERNAME_FIELD: name, "password": make_password(None)}) for name in names]
        )
        users = {u.get_username(): u for u in User._default_manager.filter(username__in=names)}
        engine = import_module(settings.SESSION_ENGINE)
        for person in people:
            user = users[person.username]
            store = engine.SessionStore()
            store[SESSION_KEY] = user._meta.pk.value_to_string(user)
            store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.create()
            person.cookie = store.session_key or ""

    def _log_out(self, people: list[Person]) -> None:
        engine = import_module(settings.SESSION_ENGINE)
        for person in people:
            if person.cookie:
                engine.SessionStore(person.cookie).delete()

    def _temporary_token(self) -> tuple[str, int]:
        User = get_user_model()
        owner, _created = User._default_manager.get_or_create(
            **{User.USERNAME_FIELD: SIM_OWNER}, defaults={"is_active": True}
        )
        if _created:
            owner.set_unusable_password()
            owner.save(update_fields=["password"])
        row, raw = tokens.api_token_issue(
            name=f"simulate_users {uuid.uuid4().hex[:8]}",
            owner=owner,
            can_act_for_users=True,
            actor=operator_label("simulate_users"),
        )
        return raw, row.pk

    def _report(self, people: list[Person], tally: Tally, elapsed: float) -> dict[str, Any]:
        waits = [
            p.admitted - p.arrived for p in people if p.admitted is not None and p.queued_first
        ]
        return {
            "people": len(people),
            "served": sum(p.served for p in people),
            "admitted_at_once": sum(p.admitted is not None and not p.queued_first for p in people),
            "waited": sum(p.queued_first for p in people),
            "not_served": sum(not p.served for p in people),
            "wait_p50": percentile(waits, 50),
            "wait_p90": percentile(waits, 90),
            "wait_max": max(waits) if waits else None,
            "max_active_seen": tally.max_active_seen,
            "limit": tally.limit_seen,
            "rate_limited": tally.rate_limited,
            "errors": sum(tally.errors.values()),
            "by_error": dict(tally.errors),
            "seconds": round(elapsed, 1),
        }

    def _print(self, r: dict[str, Any]) -> None:
        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        lines = [
            f"Done in {r['seconds']}s.",
            f"  served (admitted and chatted)  {r['served']}/{r['people']}",
            f"  admitted at once               {r['admitted_at_once']}",
            f"  waited in the queue            {r['waited']}",
            f"  wait p50 / p90 / max           {secs(r['wait_p50'])} / {secs(r['wait_p90'])}"
            f" / {secs(r['wait_max'])}",
            f"  max active seen (server)       {r['max_active_seen']} (limit {r['limit']})",
            f"  rate-limited retries           {r['rate_limited']}",
            f"  errors                         {r['errors']} {r['by_error'] or ''}".rstrip(),
        ]
        style = (
            self.style.SUCCESS
            if r["served"] == r["people"] and not r["errors"]
            else (self.style.WARNING)
        )
        self.stdout.write(style("\n".join(lines)))
