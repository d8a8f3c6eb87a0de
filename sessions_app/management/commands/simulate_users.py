"""A load rehearsal against a running server: N simulated people queue, chat and leave.

Each simulated person drives the JSON API exactly as a service client would: a bearer token
with the act-for-users permission opens a session for them (`sim-<run>-<n>`, provisioned on
first use, which stands in for logging in), they poll their position every `--poll` seconds
while queued (which is also their presence), hold their seat for `--think` seconds once
admitted (chatting), then close it. The chat itself is not sent: the JSON API has no chat
endpoint and the chat socket needs a password login, so "chat" here is holding the seat;
what is rehearsed is admission, the queue and promotion under load.

Bounded on purpose: at most MAX_PEOPLE people, at most `--duration` seconds (then everyone
still waiting leaves and counts as not served), and loopback only unless --allow-remote.
The token comes from --token or CHATGATE_SIM_TOKEN; without one, a temporary token is
issued in this database (the server must share it) and revoked at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app import services
from sessions_app.management.commands._common import operator_label

MAX_PEOPLE = 2000
MAX_DURATION = 3600
SIM_OWNER = "simulate_users"


@dataclass
class Person:
    username: str
    arrived: float = 0.0
    admitted: float | None = None
    queued_first: bool = False
    served: bool = False
    state: str = "arriving"  # arriving | queued | active | done | gave_up


@dataclass
class Tally:
    errors: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    max_active_seen: int = 0
    limit_seen: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Rehearsal:
    """Runs the people as asyncio tasks against one base URL; never raises for HTTP trouble."""

    def __init__(
        self,
        *,
        base: str,
        token: str,
        people: list[Person],
        think: float,
        poll: float,
        ramp: float,
        duration: float,
        progress: Any,
    ) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.people = people
        self.think = think
        self.poll = poll
        self.ramp = ramp
        self.duration = duration
        self.progress = progress
        self.tally = Tally()
        self.started = 0.0
        self.deadline = 0.0

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    async def _request(self, client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
        """One call, retried on 429/503 (after Retry-After) and network errors until the end."""
        while self._left() > 0:
            try:
                response = await client.request(method, self.base + path, **kw)
            except httpx.HTTPError as exc:
                self.tally.error(type(exc).__name__)
                await asyncio.sleep(min(1.0, max(self._left(), 0)))
                continue
            if response.status_code in (429, 503):
                if response.status_code == 429:
                    self.tally.rate_limited += 1
                else:
                    self.tally.error("503")
                wait = float(response.headers.get("Retry-After", "1") or 1)
                await asyncio.sleep(min(wait, max(self._left(), 0)))
                continue
            if response.status_code >= 500:
                self.tally.error(str(response.status_code))
            return response
        return None

    async def _person(self, client: httpx.AsyncClient, index: int, person: Person) -> None:
        if self.ramp and len(self.people) > 1:
            await asyncio.sleep(self.ramp * index / (len(self.people) - 1))
        person.arrived = time.monotonic()
        body = {"user_id": person.username, "session_id": f"rehearsal-{person.username}"}
        response = await self._request(client, "POST", "/session/create", json=body)
        if response is None or response.status_code not in (200, 201):
            self._unexpected(response, "create")
            person.state = "gave_up"
            return
        state = response.json()["status"]
        person.queued_first = state == "queued"
        while state == "queued":
            person.state = "queued"
            if self._left() <= 0:
                break
            await asyncio.sleep(min(self.poll, max(self._left(), 0)))
            response = await self._request(client, "GET", f"/session/position/{person.username}")
            if response is None:
                break
            if response.status_code != 200:
                # 404: the gate ended the session (abandoned?) — a real failure of the rehearsal.
                self._unexpected(response, "position")
                person.state = "gave_up"
                return
            state = response.json()["status"]
        if state == "active":
            person.admitted = time.monotonic()
            person.state = "active"
            await asyncio.sleep(min(self.think, max(self._left(), 0)))
        # Leaving: served if the seat was held; people still waiting at the deadline leave
        # too, so that nobody is left holding a place on the server when the rehearsal ends.
        try:
            closed = await client.delete(f"{self.base}/session/close/{person.username}", timeout=10)
            if closed.status_code not in (200, 404):
                self._unexpected(closed, "close")
        except httpx.HTTPError as exc:
            self.tally.error(f"close {type(exc).__name__}")
        person.served = person.admitted is not None
        person.state = "done" if person.served else "gave_up"

    def _unexpected(self, response: Any, what: str) -> None:
        if response is None:
            self.tally.error(f"{what}: out of time")
            return
        code = ""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            code = response.json()["error"]["code"]
        self.tally.error(f"{what}: {response.status_code} {code}".strip())

    async def _watch(self, client: httpx.AsyncClient) -> None:
        """Progress once a second, and the server's own active count (the limit under test)."""
        while True:
            try:
                response = await client.get(f"{self.base}/session/status?limit=1", timeout=5)
                if response.status_code == 200:
                    data = response.json()
                    self.tally.max_active_seen = max(
                        self.tally.max_active_seen, int(data["active_sessions"])
                    )
                    self.tally.limit_seen = int(data["max_active_sessions"])
                    server = (
                        f"server active {data['active_sessions']}/"
                        f"{data['max_active_sessions']} queued {data['queue_length']}"
                    )
                else:
                    server = f"server status {response.status_code}"
            except httpx.HTTPError as exc:
                server = f"server unreachable ({type(exc).__name__})"
            states = [p.state for p in self.people]
            self.progress(
                f"[{time.monotonic() - self.started:6.1f}s] {server} | "
                f"waiting {states.count('queued')} chatting {states.count('active')} "
                f"served {sum(p.served for p in self.people)}/{len(self.people)} "
                f"errors {sum(self.tally.errors.values())}"
            )
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.duration
        limits = httpx.Limits(max_connections=min(len(self.people) + 1, 200))
        async with httpx.AsyncClient(
            headers=self.headers, limits=limits, timeout=httpx.Timeout(15.0)
        ) as client:
            watcher = asyncio.create_task(self._watch(client))
            try:
                await asyncio.gather(
                    *(self._person(client, i, p) for i, p in enumerate(self.people))
                )
            finally:
                watcher.cancel()


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
        rehearsal = Rehearsal(
            base=url,
            token=token,
            people=people,
            think=options["think"],
            poll=options["poll"],
            ramp=options["ramp"],
            duration=options["duration"],
            progress=lambda line: (self.stdout.write(line), self.stdout.flush()),
        )
        self.stdout.write(
            f"Rehearsal {run}: {count} people against {url}, think {options['think']:g}s, "
            f"poll {options['poll']:g}s, at most {options['duration']:g}s."
        )
        try:
            asyncio.run(rehearsal.run())
        except KeyboardInterrupt:
            self.stdout.write(self.style.WARNING("Interrupted; the figures so far:"))
        finally:
            if temporary_id is not None:
                services.api_token_revoke(
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

    def _temporary_token(self) -> tuple[str, int]:
        User = get_user_model()
        owner, _created = User._default_manager.get_or_create(
            **{User.USERNAME_FIELD: SIM_OWNER}, defaults={"is_active": True}
        )
        if _created:
            owner.set_unusable_password()
            owner.save(update_fields=["password"])
        row, raw = services.api_token_issue(
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
