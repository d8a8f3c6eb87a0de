"""The simulated people of `simulate_users` (the command's docstring says what they do): their
records, the tally, and the Rehearsal that runs them as asyncio tasks against a server. Kept
apart from the command so that each file stays readable (the command parses options, logs people
in and prints the report)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

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
    cookie: str = ""  # the login session (--chat)
    answered: bool = False  # --chat: the streamed answer to their message arrived


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
        chat: bool = False,
        cookie_name: str = "sessionid",
    ) -> None:
        self.origin = base.rstrip("/")
        self.ws_url = self.origin.replace("http", "ws", 1) + "/ws/chat/"
        self.chat = chat
        self.cookie_name = cookie_name
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

    async def _chatter(self, client: httpx.AsyncClient, index: int, person: Person) -> None:
        """--chat: one person on the chat socket, from queueing to leaving."""
        if self.ramp and len(self.people) > 1:
            await asyncio.sleep(self.ramp * index / (len(self.people) - 1))
        person.arrived = time.monotonic()
        headers = {"Cookie": f"{self.cookie_name}={person.cookie}"}
        left = False
        try:
            async with ws_connect(
                self.ws_url,
                origin=self.origin,  # type: ignore[arg-type]
                additional_headers=headers,
                open_timeout=30,
                proxy=None,
            ) as ws:
                first = True
                while True:
                    remaining = self._left()
                    if remaining <= 0 and not left:
                        await ws.send(json.dumps({"type": "leave"}))  # out of time: leave
                        left = True
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=max(remaining, 10.0))
                    except TimeoutError:
                        if left:
                            self.tally.error("chat: no session.closed after leave")
                            break
                        continue
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "queue.status":
                        if first:
                            person.queued_first = frame.get("state") == "queued"
                            first = False
                        if frame.get("state") == "queued":
                            person.state = "queued"
                        elif frame.get("state") == "active":
                            await self._admitted(ws, person)
                    elif kind == "session.activated":
                        await self._admitted(ws, person)
                    elif kind == "stream_end":
                        person.answered = True
                        await asyncio.sleep(min(self.think, max(self._left(), 0)))
                        if not left:
                            await ws.send(json.dumps({"type": "leave"}))
                            left = True
                    elif kind == "error":
                        self.tally.error(f"chat error {frame.get('code')}")
                    elif kind == "session.closed":
                        if frame.get("reason") != "user" or not left:
                            self.tally.error(f"chat: closed ({frame.get('reason')})")
                        break
        except ConnectionClosed:
            if not left:
                self.tally.error("chat: socket closed early")
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.tally.error(f"chat: {type(exc).__name__}")
        person.served = person.admitted is not None and person.answered
        person.state = "done" if person.served else "gave_up"

    async def _admitted(self, ws: Any, person: Person) -> None:
        if person.admitted is not None:
            return
        person.admitted = time.monotonic()
        person.state = "active"
        await ws.send(json.dumps({"type": "message", "content": f"hello from {person.username}"}))

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
                person = self._chatter if self.chat else self._person
                await asyncio.gather(*(person(client, i, p) for i, p in enumerate(self.people)))
            finally:
                watcher.cancel()
