"""The Redis-backed admission manager: every check-then-act on a limit is one Lua script.

This module owns the live state of the gate (DESIGN.md §1-2). It knows nothing of the ORM or
the channel layer: it runs one script per transition and returns small dataclasses saying what
changed, so that services.py can write the SQL record and notify people.

Rules chosen here, where DESIGN.md leaves the choice to us:

* **Priority lane without starvation — bounded overtaking.** A person in the priority lane is
  queued as if they had arrived `priority_lead` tickets earlier (default 20). So a priority
  arrival goes ahead of at most that many earlier normal-lane people, and nobody in the normal
  lane is ever overtaken by more than `priority_lead` people in all: the normal lane cannot
  starve, and the queue's sorted-set rank stays the exact place in line (positions shown to
  people are never a guess). See `queue_score` in lua/_lib.lua.
* **Idle expiry** uses the time of last activity (the `active` score), so a live change of the
  idle timeout applies to everybody at once.
* **Presence**: an open page renews `seen`; API calls about a session count as a poll. A queued
  session unseen for the grace is abandoned; an active one only if a page was ever attached.
* **Query slots**: fair FIFO by ticket among waiting queries; at most one lease per session, so
  a session's messages are answered one at a time, in the order they asked for a slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

from sessions_app.gate.keys import RedisKeys
from sessions_app.gate.slots import SlotScripts

LUA_DIR = Path(__file__).with_name("lua")
SCRIPT_NAMES = (
    "open",
    "close",
    "touch",
    "touch_many",
    "sweep",
    "promote",
    "set_limits",
    "acquire_slot",
    "renew_slot",
    "release_slot",
)
# Names of the live limits in the Redis `config` hash, by GateSettings field.
CONFIG_FIELDS = {
    "max_active_sessions": "max_active",
    "max_concurrent_queries": "max_queries",
    "idle_timeout_seconds": "idle_timeout",
    "disconnect_grace_seconds": "grace",
    "query_wait_timeout_seconds": "query_wait",
    "lease_ttl_seconds": "lease_ttl",
    "priority_lead": "priority_lead",
    "admissions_paused": "paused",
}
LANES = ("normal", "priority")
CLOSE_REASONS = ("user", "expired", "abandoned", "admin", "lost")


class GateUnavailable(Exception):
    """Redis cannot be asked, so nobody is admitted: the caller answers 503 / a clear notice."""

    def __init__(self, detail: str = "") -> None:
        message = "The admission store (Redis) is unreachable; try again shortly."
        super().__init__(f"{message} ({detail})" if detail else message)
        self.detail = detail


@dataclass(frozen=True)
class OpenResult:
    session_id: str
    state: str  # "active" | "queued"
    position: int  # 1-based place in the queue; 0 when active
    created: bool
    ticket: int = 0
    promoted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    # What the caller the session was created for sent: how, and its own reference. None for a
    # session Redis holds from before they were kept (the SQL record then knows).
    via: str | None = None
    client_ref: str | None = None


@dataclass(frozen=True)
class CloseResult:
    closed: bool
    previous_state: str  # "active" | "queued" | "" when it was not live
    promoted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    refused_state: str = ""  # with only_if_state: the state that did not match ("none" if gone)


@dataclass(frozen=True)
class TouchResult:
    state: str  # "active" | "queued" | "none" | "expired" | "abandoned"
    position: int
    promoted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SweepResult:
    expired: list[str]
    abandoned: list[str]
    promoted: list[str]
    reclaimed: int

    @property
    def changed(self) -> bool:
        return bool(self.expired or self.abandoned or self.promoted or self.reclaimed)


@dataclass(frozen=True)
class PromoteResult:
    outcome: str  # "admitted" | "front" | "not_queued"
    over_limit: bool


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    user: str
    state: str
    lane: str
    ticket: int
    created: float
    activated: float | None
    paged: bool
    over_limit: bool
    lease: str


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _session_info(session_id: str, raw: dict[Any, Any]) -> SessionInfo | None:
    if not raw:
        return None
    data = {_decode(k): _decode(v) for k, v in raw.items()}
    return SessionInfo(
        session_id=session_id,
        user=data.get("user", ""),
        state=data.get("state", ""),
        lane=data.get("lane", "normal"),
        ticket=int(data.get("ticket", 0)),
        created=float(data.get("created", 0)),
        activated=float(data["activated"]) if data.get("activated") else None,
        paged=data.get("paged") == "1",
        over_limit=data.get("over") == "1",
        lease=data.get("lease", ""),
    )


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turns every way of not reaching Redis into the one exception callers handle."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise GateUnavailable(str(exc)) from exc
    except redis.exceptions.BusyLoadingError as exc:  # pragma: no cover - a restart window
        raise GateUnavailable(str(exc)) from exc


class AdmissionManager(SlotScripts):
    """Runs the transitions (the slot semaphore's: gate/slots.py). `now` arguments exist for
    tests only; production uses Redis TIME."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        config_loader: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        # Where the live limits come from when Redis has none (GateSettings in the app; see
        # apps.py): the settings' defaults otherwise.
        self.config_loader = config_loader or default_limits
        self._scripts: dict[str, Script] = {}
        library = (LUA_DIR / "_lib.lua").read_text()
        for name in SCRIPT_NAMES:
            body = (LUA_DIR / f"{name}.lua").read_text()
            self._scripts[name] = client.register_script(library + "\n" + body)

    @cached_property
    def _script_keys(self) -> list[str]:
        k = self.keys
        return [
            k.queue,
            k.active,
            k.seen,
            k.seq,
            k.config,
            k.stats,
            k.slots,
            k.slot_queue,
            k.slot_waiters,
            k.departures,
            k.waits,
            k.journal,
        ]

    def _argv(self, args: tuple[Any, ...], now: float | None) -> list[Any]:
        """A script's ARGV: the key prefix, the clock ("" for Redis TIME), then its own."""
        return [self.keys.tagged, "" if now is None else repr(float(now)), *args]

    def _run(self, name: str, *args: Any, now: float | None = None) -> Any:
        argv = self._argv(args, now)
        with redis_errors():
            try:
                return _decode(self._scripts[name](keys=self._script_keys, args=argv))
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith("NOCONFIG"):
                    raise
            # Redis lost the live limits (a restart): put the configured ones back, then run
            # the transition under them. Two processes may both do this; the values are equal.
            self.set_limits(self.config_loader())
            return _decode(self._scripts[name](keys=self._script_keys, args=argv))

    def _run_batch(
        self, name: str, calls: list[tuple[Any, ...]], *, now: float | None = None
    ) -> list[Any]:
        """One script over several argument lists in one round trip (a pipeline, not a
        transaction: each call is atomic on its own). EVALSHA directly: redis-py's Script in a
        pipeline sends SCRIPT EXISTS first, a second round trip. A Redis that lost its scripts
        (restarted) gets the script loaded and the batch sent once more. No NOCONFIG repair:
        the callers are retried by their own renewers."""
        script = self._scripts[name]
        keys = self._script_keys

        def send() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *self._argv(args, now))
                return [_decode(reply) for reply in pipe.execute()]

        with redis_errors():
            try:
                return send()
            except redis.exceptions.NoScriptError:
                self.client.script_load(script.script)
                return send()

    # --- sessions ---------------------------------------------------------------------------

    def open(
        self,
        user: str,
        *,
        lane: str = "normal",
        via: str = "page",
        client_ref: str = "",
        now: float | None = None,
    ) -> OpenResult:
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        new_id = str(uuid.uuid4())
        reply = self._run("open", user, lane, new_id, via, client_ref, now=now)
        sid, state, position, created, promoted, expired, abandoned, ticket = reply[:8]
        kept_via, kept_ref = reply[8:10]
        return OpenResult(
            session_id=sid,
            state=state,
            position=int(position),
            created=bool(int(created)),
            ticket=int(ticket or 0),
            promoted=promoted,
            expired=expired,
            abandoned=abandoned,
            via=kept_via or None,
            client_ref=kept_ref if kept_via else None,
        )

    def close(
        self,
        session_id: str,
        *,
        reason: str,
        only_if_state: str = "",
        note: str = "",
        now: float | None = None,
    ) -> CloseResult:
        if reason not in CLOSE_REASONS:
            raise ValueError(f"unknown close reason {reason!r}")
        previous, promoted, expired, abandoned, refused = self._run(
            "close", session_id, reason, only_if_state, note[:300], now=now
        )
        return CloseResult(
            closed=bool(previous),
            previous_state=previous,
            promoted=promoted,
            expired=expired,
            abandoned=abandoned,
            refused_state=refused,
        )

    def touch(self, session_id: str, *, kind: str, now: float | None = None) -> TouchResult:
        if kind not in ("presence", "poll", "activity"):
            raise ValueError(f"unknown touch kind {kind!r}")
        state, position, promoted = self._run("touch", session_id, kind, now=now)
        return TouchResult(state=state, position=int(position), promoted=promoted)

    def sweep(self, *, now: float | None = None) -> SweepResult:
        expired, abandoned, promoted, reclaimed = self._run("sweep", now=now)
        return SweepResult(
            expired=expired, abandoned=abandoned, promoted=promoted, reclaimed=int(reclaimed)
        )

    def promote(self, session_id: str, *, how: str, now: float | None = None) -> PromoteResult:
        if how not in ("admit", "front"):
            raise ValueError(f"unknown promotion {how!r}")
        outcome, over = self._run("promote", session_id, how, now=now)
        return PromoteResult(outcome=outcome, over_limit=bool(int(over)))

    def set_limits(self, limits: dict[str, int], *, now: float | None = None) -> list[str]:
        """Writes live limits (GateSettings field names) and returns who was promoted."""
        pairs: list[Any] = []
        for name, value in limits.items():
            pairs += [CONFIG_FIELDS[name], int(value)]
        (promoted,) = self._run("set_limits", *pairs, now=now)
        return list(promoted)

    # --- reads (no check-then-act: plain commands are enough) -------------------------------

    def session_of_user(self, user: str) -> str | None:
        with redis_errors():
            value = self.client.get(self.keys.user(user))
        return _decode(value) if value else None

    def session_info(self, session_id: str) -> SessionInfo | None:
        return self.session_infos([session_id])[session_id]

    def session_infos(self, session_ids: list[str]) -> dict[str, SessionInfo | None]:
        """Many sessions' hashes in one round trip (the console lists hundreds)."""
        if not session_ids:
            return {}
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.hgetall(self.keys.session(sid))
            rows: list[Any] = pipe.execute()
        return {sid: _session_info(sid, raw) for sid, raw in zip(session_ids, rows, strict=True)}

    def position(self, session_id: str) -> int:
        """1-based place in the queue, or 0 when not queued."""
        with redis_errors():
            rank: Any = self.client.zrank(self.keys.queue, session_id)
        return 0 if rank is None else int(rank) + 1

    def queue_order(self, start: int = 0, end: int = -1) -> list[str]:
        with redis_errors():
            return _decode(self.client.zrange(self.keys.queue, start, end))

    def active_with_activity(self) -> list[tuple[str, float]]:
        with redis_errors():
            rows: Any = self.client.zrange(self.keys.active, 0, -1, withscores=True)
        return [(_decode(member), float(score)) for member, score in rows]

    def seen_times(self, session_ids: list[str]) -> dict[str, float | None]:
        if not session_ids:
            return {}
        with redis_errors():
            scores = self.client.zmscore(self.keys.seen, session_ids)
        return {
            sid: (float(s) if s is not None else None)
            for sid, s in zip(session_ids, scores, strict=True)
        }

    def counts(self) -> dict[str, int]:
        k = self.keys
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(k.active)
            pipe.zcard(k.queue)
            pipe.zcard(k.slots)
            pipe.zcard(k.slot_queue)
            active, queued, in_flight, waiting_queries = pipe.execute()
        return {
            "active": int(active),
            "queued": int(queued),
            "in_flight": int(in_flight),
            "waiting_queries": int(waiting_queries),
        }

    def live_leases(self) -> set[str]:
        with redis_errors():
            return set(_decode(self.client.zrange(self.keys.slots, 0, -1)))

    def config(self) -> dict[str, int]:
        """The live limits as Redis holds them, by GateSettings field name."""
        with redis_errors():
            raw = self.client.hgetall(self.keys.config)
        data = {_decode(k): int(float(_decode(v))) for k, v in raw.items()}
        return {name: data[key] for name, key in CONFIG_FIELDS.items() if key in data}

    def stats(self) -> dict[str, int]:
        with redis_errors():
            raw = self.client.hgetall(self.keys.stats)
        return {_decode(k): int(_decode(v)) for k, v in raw.items()}

    def departures(self) -> list[float]:
        """Times of the most recent departures from the active set, newest first."""
        with redis_errors():
            return [float(_decode(v)) for v in self.client.lrange(self.keys.departures, 0, -1)]

    def recent_waits(self) -> list[tuple[float, float]]:
        """(when admitted, seconds waited) of recent admissions, newest first."""
        with redis_errors():
            raw = self.client.lrange(self.keys.waits, 0, -1)
        pairs = []
        for item in _decode(raw):
            when, waited = item.split(":")
            pairs.append((float(when), float(waited)))
        return pairs

    def server_time(self) -> float:
        with redis_errors():
            seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1_000_000

    def ping(self) -> bool:
        with redis_errors():
            return bool(self.client.ping())


def default_limits() -> dict[str, int]:
    """The first values of the live limits, from settings (no database needed)."""
    from sessions_app import conf

    return {
        "max_active_sessions": int(conf.get("MAX_ACTIVE_SESSIONS")),
        "max_concurrent_queries": int(conf.get("MAX_CONCURRENT_QUERIES")),
        "idle_timeout_seconds": int(conf.get("IDLE_TIMEOUT_SECONDS")),
        "disconnect_grace_seconds": int(conf.get("DISCONNECT_GRACE_SECONDS")),
        "query_wait_timeout_seconds": int(conf.get("QUERY_WAIT_TIMEOUT_SECONDS")),
        "lease_ttl_seconds": int(conf.get("LEASE_TTL_SECONDS")),
        "priority_lead": int(conf.get("PRIORITY_LEAD")),
        "admissions_paused": 0,
    }


# Set by apps.py to read the recorded GateSettings (this module stays free of the ORM).
config_loader: Callable[[], dict[str, int]] = default_limits
_manager: AdmissionManager | None = None


def get_manager() -> AdmissionManager:
    """The process-wide manager, built from settings on first use (one pool, scripts once)."""
    global _manager
    if _manager is None:
        from django.conf import settings

        from sessions_app.gate.connection import gate_client

        _manager = AdmissionManager(
            gate_client(), RedisKeys(settings.CHATGATE_REDIS_PREFIX), config_loader=config_loader
        )
    return _manager


def reset_manager() -> None:
    """Forgets the process-wide manager (tests that change REDIS_URL, Sentinels or the prefix)."""
    global _manager
    if _manager is not None:
        from sessions_app.gate.connection import client_close

        client_close(_manager.client)
    _manager = None
