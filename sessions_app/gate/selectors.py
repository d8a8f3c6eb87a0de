"""Reads shared by the chat page, the console, the API and the commands.

Everything live comes from Redis (the truth for admission); names and times come from the SQL
record. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model

from sessions_app import conf
from sessions_app.gate import eta
from sessions_app.gate.admission import get_manager
from sessions_app.models import ChatSession, GateSettings

# A page heartbeats presence every PRESENCE_HEARTBEAT_SECONDS; missing two means not connected.
PRESENCE_HEARTBEAT_SECONDS = 15


@dataclass(frozen=True)
class GateSnapshot:
    active: int
    queued: int
    in_flight: int
    waiting_queries: int
    max_active_sessions: int
    max_concurrent_queries: int
    idle_timeout_seconds: int
    disconnect_grace_seconds: int
    query_wait_timeout_seconds: int
    admissions_paused: bool
    banner_message: str
    stats: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate_snapshot() -> GateSnapshot:
    manager = get_manager()
    counts = manager.counts()
    live = manager.config()
    gate = GateSettings.load()
    return GateSnapshot(
        active=counts["active"],
        queued=counts["queued"],
        in_flight=counts["in_flight"],
        waiting_queries=counts["waiting_queries"],
        max_active_sessions=live.get("max_active_sessions", gate.max_active_sessions),
        max_concurrent_queries=live.get("max_concurrent_queries", gate.max_concurrent_queries),
        idle_timeout_seconds=live.get("idle_timeout_seconds", gate.idle_timeout_seconds),
        disconnect_grace_seconds=live.get(
            "disconnect_grace_seconds", gate.disconnect_grace_seconds
        ),
        query_wait_timeout_seconds=live.get(
            "query_wait_timeout_seconds", gate.query_wait_timeout_seconds
        ),
        admissions_paused=bool(live.get("admissions_paused", gate.admissions_paused)),
        banner_message=gate.banner_message,
        stats=manager.stats(),
    )


def departure_rate(*, now: float | None = None, max_active: int | None = None) -> float:
    manager = get_manager()
    now = manager.server_time() if now is None else now
    if max_active is None:
        max_active = manager.config().get("max_active_sessions", conf.get("MAX_ACTIVE_SESSIONS"))
    return eta.departure_rate(
        manager.departures(),
        now=now,
        max_active=int(max_active),
        assumed_session_seconds=float(conf.get("ASSUMED_SESSION_SECONDS")),
    )


@dataclass(frozen=True)
class SessionStatus:
    """What `queue.status` and the position endpoint say to one person."""

    state: str  # "queued" | "active" | "closed" | "none"
    session_id: str | None
    position: int
    ahead: int
    eta_seconds: int | None
    # Admissions paused by staff: the page says "your place is kept", not "about 1 minute".
    paused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "session_id": self.session_id,
            "position": self.position,
            "ahead": self.ahead,
            "eta_seconds": self.eta_seconds,
            "paused": self.paused,
        }


def session_status(session_id: str | None) -> SessionStatus:
    if not session_id:
        return SessionStatus("none", None, 0, 0, None)
    manager = get_manager()
    info = manager.session_info(session_id)
    if info is None:
        return SessionStatus("closed", session_id, 0, 0, None)
    if info.state == "active":
        return SessionStatus("active", session_id, 0, 0, None)
    position = manager.position(session_id)
    return SessionStatus(
        state="queued",
        session_id=session_id,
        position=position,
        ahead=max(position - 1, 0),
        eta_seconds=eta.eta_seconds(position, departure_rate()),
        paused=admissions_paused(),
    )


def admissions_paused() -> bool:
    return bool(get_manager().config().get("admissions_paused"))


def session_status_for_user(user: Any) -> SessionStatus:
    from sessions_app.gate.services import redis_user_key

    session_id = get_manager().session_of_user(redis_user_key(user))
    if session_id is None:
        return SessionStatus("none", None, 0, 0, None)
    return session_status(session_id)


@dataclass(frozen=True)
class QueueEntry:
    position: int
    session_id: str
    username: str
    lane: str
    waiting_since: float
    connected: bool
    eta_seconds: int | None


@dataclass(frozen=True)
class ActiveEntry:
    session_id: str
    username: str
    activated: float | None
    last_activity: float
    idle_for: float
    connected: bool
    over_limit: bool
    generating: bool
    messages: int


def _usernames(user_keys: set[str]) -> dict[str, str]:
    users = get_user_model().objects.filter(pk__in=[int(k) for k in user_keys if k.isdigit()])
    return {str(u.pk): u.get_username() for u in users}


def _connected(seen: float | None, now: float) -> bool:
    return seen is not None and now - seen <= 2 * PRESENCE_HEARTBEAT_SECONDS


def queue_entries(limit: int | None = None) -> list[QueueEntry]:
    """The queue in order, with positions and estimates (first `limit` people)."""
    manager = get_manager()
    now = manager.server_time()
    ids = manager.queue_order(0, -1 if limit is None else limit - 1)
    by_id = manager.session_infos(ids)
    infos = [by_id[sid] for sid in ids]
    seen = manager.seen_times(ids)
    names = _usernames({i.user for i in infos if i})
    rate = departure_rate(now=now)
    entries = []
    for position, (sid, info) in enumerate(zip(ids, infos, strict=True), start=1):
        if info is None:
            continue
        entries.append(
            QueueEntry(
                position=position,
                session_id=sid,
                username=names.get(info.user, info.user),
                lane=info.lane,
                waiting_since=info.created,
                connected=_connected(seen.get(sid), now),
                eta_seconds=eta.eta_seconds(position, rate),
            )
        )
    return entries


def active_entries() -> list[ActiveEntry]:
    manager = get_manager()
    now = manager.server_time()
    rows = manager.active_with_activity()
    ids = [sid for sid, _ in rows]
    infos = manager.session_infos(ids)
    seen = manager.seen_times(ids)
    live_leases = manager.live_leases()
    names = _usernames({i.user for i in infos.values() if i})
    message_counts = _message_counts(ids)
    entries = []
    for sid, last in rows:
        info = infos.get(sid)
        if info is None:
            continue
        entries.append(
            ActiveEntry(
                session_id=sid,
                username=names.get(info.user, info.user),
                activated=info.activated,
                last_activity=last,
                idle_for=max(now - last, 0.0),
                connected=_connected(seen.get(sid), now),
                over_limit=info.over_limit,
                generating=bool(info.lease) and info.lease in live_leases,
                messages=message_counts.get(sid, 0),
            )
        )
    return entries


def _message_counts(session_ids: list[str]) -> dict[str, int]:
    from django.db.models import Count

    rows = (
        ChatSession.objects.filter(id__in=session_ids)
        .annotate(n=Count("messages"))
        .values_list("id", "n")
    )
    return {str(sid): n for sid, n in rows}


def session_idle_deadlines() -> dict[str, float]:
    """Active session id → the time its idle timeout ends it (Redis clock)."""
    manager = get_manager()
    timeout = manager.config().get("idle_timeout_seconds", conf.get("IDLE_TIMEOUT_SECONDS"))
    return {sid: last + float(timeout) for sid, last in manager.active_with_activity()}


# --- operator reads (management commands, issue 5) ---------------------------------------------


class SessionNotFound(LookupError):
    """An operator named a person or session that has no live session; the text says which."""


@dataclass(frozen=True)
class SessionRef:
    session_id: str
    username: str
    state: str  # "queued" | "active" (Redis, the live truth)


def session_ref_resolve(ref: str) -> SessionRef:
    """A live session named by its id or by its person's username (`USER|SESSION_ID`)."""
    import uuid

    manager = get_manager()
    ref = ref.strip()
    try:
        session_id: str | None = str(uuid.UUID(ref))
    except ValueError:
        session_id = None
    if session_id is not None:
        info = manager.session_info(session_id)
        if info is not None:
            names = _usernames({info.user})
            return SessionRef(session_id, names.get(info.user, info.user), info.state)
    User = get_user_model()
    user = User._default_manager.filter(**{User.USERNAME_FIELD: ref}).first()
    if user is None:
        if session_id is not None:
            raise SessionNotFound(f"Session {session_id} is not live (closed or unknown).")
        raise SessionNotFound(f"No user named {ref!r}.")
    from sessions_app.gate.services import redis_user_key

    live = manager.session_of_user(redis_user_key(user))
    info = manager.session_info(live) if live else None
    if live is None or info is None:
        raise SessionNotFound(f"{user.get_username()} has no live session.")
    return SessionRef(live, user.get_username(), info.state)


@dataclass(frozen=True)
class GateOverview:
    """Everything `queue_status` shows: counts and limits, who is active, the queue's head."""

    gate: GateSnapshot
    active: list[ActiveEntry]
    queue: list[QueueEntry]
    now: float  # Redis time, so "waiting for" agrees with the times the scripts wrote

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "gate": self.gate.as_dict(),
            "active": [entry.__dict__ for entry in self.active],
            "queue": [entry.__dict__ for entry in self.queue],
        }


def gate_overview(queue_limit: int | None = 50) -> GateOverview:
    return GateOverview(
        gate=gate_snapshot(),
        active=active_entries(),
        queue=queue_entries(queue_limit),
        now=get_manager().server_time(),
    )
