"""The endpoints: each authenticates, parses, calls one service or selector, answers JSON.

Contract (kept compatible with the earlier FastAPI service, DESIGN.md §5):

    POST   session/create             {"user_id"?, "session_id"?} -> 201 new / 200 existing
    DELETE session/close/<user_id>    -> {"status": "closed", "session_id", "promoted"}
    GET    session/status             -> counts and limits (+ lists for staff and tokens)
    GET    session/position/<user_id> -> {"status": "queued", "position", ...} or "active"
    POST   session/cleanup            -> {"expired", "abandoned", "promoted"} (staff, tokens)
    GET    openapi.json               -> the OpenAPI description of all of the above

The `session_id` a caller sends on create is the caller's own reference: it is stored and
echoed back as `client_session_id`, never used as the gate's identifier (the earlier service
let clients make identifiers up, which let one client guess another's). The gate's
`session_id` is always its own UUID4.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.views.decorators.csrf import csrf_exempt

from sessions_app import conf
from sessions_app.api.auth import (
    Caller,
    authenticate,
    named_subject,
    provision_user,
    subject_for,
)
from sessions_app.api.errors import ApiError, bad_request, forbidden, json_view, not_found
from sessions_app.api.schema import openapi_document
from sessions_app.gate import eta, selectors, services
from sessions_app.models import ChatSession
from sessions_app.ratelimit import Limit, rate_check_all

# A service token opens sessions for many people, so it gets a larger budget than one person.
# Lists in `status` are for dashboards, not exports: bounded so one call stays cheap.
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
CLIENT_REF_MAX = 200

Handler = Callable[..., HttpResponse]


def endpoint(**handlers: Handler) -> Handler:
    """One URL, one handler per HTTP method; any other method is a JSON 405 with `Allow`."""
    allowed = ", ".join(sorted(handlers))

    @csrf_exempt
    @json_view
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        handler = handlers.get(request.method or "")
        if handler is None:
            raise ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed here; use {allowed}.",
                headers={"Allow": allowed},
            )
        return handler(request, **kwargs)

    return view


_pool: ThreadPoolExecutor | None = None
_pool_made = threading.Lock()


def api_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_made:
        if _pool is None:
            workers = max(1, int(conf.get("API_CONCURRENCY")))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api")
    return _pool


def release_connections() -> None:
    """Closes this thread's database connections before the next request may run.

    Django closes them only when the response has been sent (`request_finished`), and in a burst
    the event loop sends it long after the view returned: the finished requests' connections
    piled up past the semaphore (95 idle at once over 4 processes) until PostgreSQL refused
    more ("sorry, too many clients already") and the gate answered 503. Closing here bounds a
    process to API_CONCURRENCY connections. A connection inside an atomic block (a test's
    transaction, a caller's) is left alone: closing it would roll that transaction back.

    A clean SQLite connection is kept: a file has no connection limit, and opening one (with
    its PRAGMAs) and closing it again cost ~1.3 ms of CPU per request (README, "P9"); on the
    API pool's threads, which outlive requests, the next request uses it again."""
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            continue
        if conn.vendor == "sqlite" and conn.connection is not None and conn.get_autocommit():
            continue
        conn.close_if_unusable_or_obsolete()


def _pooled_call(view: Handler, request: HttpRequest, kwargs: dict[str, Any]) -> HttpResponse:
    try:
        return view(request, **kwargs)
    finally:
        release_connections()


def pooled(view: Handler) -> Callable[..., Coroutine[Any, Any, HttpResponse]]:
    """The view as an async view whose body runs on this process's API pool (API_CONCURRENCY
    threads that live as long as the process): at most API_CONCURRENCY session requests at once
    in this process; the rest wait in the pool's queue.

    Unbounded, a burst of 500 was 500 threads contending for the GIL, the Redis pool and the
    SQLite write lock; a few of them then waited past a timeout and a healthy gate answered 503
    (issue 11).

    Django's ASGI handler runs a sync view in a new thread per request, which opens a database
    connection of its own and closes it at the end: at the P9 benchmark's burst that was most
    of a create's CPU outside the services (README, "P9"). Requests beyond the pool's size wait
    in its queue, which costs no thread at all. Outside ASGI (the test client, a WSGI server)
    the view runs as Django would run it."""

    @csrf_exempt
    @functools.wraps(view)
    async def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if isinstance(request, ASGIRequest):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(api_pool(), _pooled_call, view, request, kwargs)
        response: HttpResponse = await sync_to_async(_pooled_call, thread_sensitive=True)(
            view, request, kwargs
        )
        return response

    # The lean handler (api/lean.py) already runs the whole request on the API pool, and
    # releases the thread's connections once the request is done: it calls the view itself.
    wrapper.sync_view = view  # type: ignore[attr-defined]
    return wrapper


# --- parsing -----------------------------------------------------------------------------------


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        raw = request.body
    except (RequestDataTooBig, RawPostDataException) as exc:
        raise ApiError(400, "TOO_LARGE", "The request body is too large for this API.") from exc
    if not raw.strip():
        return {}
    if request.content_type not in ("application/json", "", "text/plain"):
        raise bad_request("Send the request body as JSON (Content-Type: application/json).")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("The request body is not valid JSON.") from exc
    except RecursionError as exc:  # nested deeper than the parser goes: never a real request
        raise bad_request("The request body is nested too deeply.") from exc
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _optional_string(data: dict[str, Any], name: str, max_length: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string.")
    if len(value) > max_length:
        raise bad_request(f"{name} must be at most {max_length} characters.")
    if "\x00" in value:
        raise bad_request(f"{name} must not contain NUL characters.")
    return value


def _rate_limited(*checks: tuple[Limit, str]) -> None:
    """Counts the call against each (limit, whose budget it is) in order, in one round trip;
    the first one spent is a 429 naming whose budget it was."""
    if not checks:
        return
    refused, decision = rate_check_all([limit for limit, _who in checks])
    if refused is not None:
        who = next(who for limit, who in checks if limit is refused)
        raise ApiError(
            429,
            "RATE_LIMIT",
            f"Too many session requests for {who}: at most {refused.limit} a minute. "
            f"Try again in {decision.retry_after} s.",
            retry_after=decision.retry_after,
        )


def token_create_limit(caller: Caller) -> list[tuple[Limit, str]]:
    """A token's budget of creates (and seat-taking questions); none for a browser."""
    if caller.token is None:
        return []
    limit = int(conf.get("API_TOKEN_CREATE_RATE_PER_MINUTE"))
    who = f"this token ({caller.token.name})"
    return [(Limit("api_create_token", str(caller.token.pk), limit), who)]


def person_create_limit(subject: Any) -> tuple[Limit, str]:
    """A person's budget of creates (and seat-taking questions)."""
    limit = int(conf.get("API_CREATE_RATE_PER_MINUTE"))
    return Limit("api_create_user", str(subject.pk), limit), subject.get_username()


def _live_session_of(subject: Any) -> str:
    session_id = services.session_live_for_user(subject)
    if session_id is None:
        raise not_found(f"{subject.get_username()} has no live session.")
    return session_id


# (monotonic expiry, departures per second). The rate is an estimate over recent departures
# that costs three Redis round trips to compute; a burst of creates asked it once each (the P9
# profile, README). Every answer within a second shares one reading.
ETA_RATE_SECONDS = 1.0
_departure_rate: tuple[float, float] = (0.0, 0.0)


def eta_cache_forget() -> None:
    """Forgets the shared departure-rate reading (tests that set up departures of their own)."""
    global _departure_rate
    _departure_rate = (0.0, 0.0)


def _eta(position: int) -> int | None:
    global _departure_rate
    expires, rate = _departure_rate
    now = time.monotonic()
    if expires <= now:
        rate = selectors.departure_rate()
        _departure_rate = (now + ETA_RATE_SECONDS, rate)
    return eta.eta_seconds(position, rate)


# --- endpoints ---------------------------------------------------------------------------------


def session_create(request: HttpRequest) -> HttpResponse:
    caller = authenticate(request, write=True)
    data = _json_body(request)
    user_id = _optional_string(data, "user_id", 150)
    client_ref = _optional_string(data, "session_id", CLIENT_REF_MAX) or ""
    subject = named_subject(caller, user_id, in_path=False)
    if subject is None:
        # The token's budget is spent before a user is provisioned, so a runaway service
        # cannot mint accounts; then the new person's is counted.
        _rate_limited(*token_create_limit(caller))
        subject = provision_user(str(user_id))
        _rate_limited(person_create_limit(subject))
    else:
        _rate_limited(*token_create_limit(caller), person_create_limit(subject))
    outcome = services.session_open(user=subject, via=caller.via, client_session_id=client_ref)
    stored_ref = outcome.client_session_id
    if not outcome.created and client_ref and stored_ref and client_ref != stored_ref:
        raise ApiError(
            409,
            "SESSION_CONFLICT",
            f"{subject.get_username()} already has a live session with another "
            f"session_id ({stored_ref!r}); close it first, or send that session_id (or "
            "none) to resume it.",
            extra={"session_id": outcome.session_id, "client_session_id": stored_ref},
        )
    body: dict[str, Any] = {
        "status": outcome.state,
        "session_id": outcome.session_id,
        "client_session_id": stored_ref,
        "user_id": subject.get_username(),
        "created": outcome.created,
    }
    if outcome.state == "queued":
        body["position"] = outcome.position
        body["eta_seconds"] = _eta(outcome.position)
    return JsonResponse(body, status=201 if outcome.created else 200)


def session_close(request: HttpRequest, user_id: str) -> HttpResponse:
    caller = authenticate(request, write=True)
    subject = subject_for(caller, user_id, provision=False, in_path=True)
    session_id = _live_session_of(subject)
    result = services.session_close(session_id=session_id, reason=ChatSession.Reason.USER)
    if not result.closed:
        raise not_found(f"{subject.get_username()} has no live session.")
    return JsonResponse(
        {
            "status": "closed",
            "session_id": session_id,
            "user_id": subject.get_username(),
            "previous_state": result.previous_state,
            "promoted": len(result.promoted),
        }
    )


def session_position(request: HttpRequest, user_id: str) -> HttpResponse:
    caller = authenticate(request, write=False)
    subject = subject_for(caller, user_id, provision=False, in_path=True)
    session_id = _live_session_of(subject)
    # Asking is presence (DESIGN.md §1): a client polling its position keeps its place.
    touched = services.session_touch(session_id=session_id, kind="poll")
    if touched.state == "active":
        return JsonResponse({"status": "active", "session_id": session_id})
    if touched.state != "queued":
        raise not_found(f"{subject.get_username()} has no live session.")
    return JsonResponse(
        {
            "status": "queued",
            "session_id": session_id,
            "position": touched.position,
            "ahead": max(touched.position - 1, 0),
            "eta_seconds": _eta(touched.position),
        }
    )


def _list_limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return DEFAULT_LIST_LIMIT
    # ASCII digits only: "²".isdigit() is True, but int("²") raises.
    if (
        not (raw.isascii() and raw.isdigit() and len(raw) <= 9)
        or not 1 <= int(raw) <= MAX_LIST_LIMIT
    ):
        raise bad_request(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}.")
    return int(raw)


def gate_status(request: HttpRequest) -> HttpResponse:
    caller = authenticate(request, write=False)
    limit = _list_limit(request)
    gate = selectors.gate_snapshot()
    body: dict[str, Any] = {
        "active_sessions": gate.active,
        "max_active_sessions": gate.max_active_sessions,
        "queue_length": gate.queued,
        "in_flight_queries": gate.in_flight,
        "waiting_queries": gate.waiting_queries,
        "max_concurrent_queries": gate.max_concurrent_queries,
        "admissions_paused": gate.admissions_paused,
    }
    if caller.sees_lists:
        body["active"] = [
            {
                "session_id": entry.session_id,
                "user_id": entry.username,
                "activated_at": entry.activated,
                "idle_seconds": round(entry.idle_for, 1),
                "connected": entry.connected,
                "generating": entry.generating,
                "over_limit": entry.over_limit,
            }
            for entry in selectors.active_entries()[:limit]
        ]
        body["queue"] = [
            {
                "position": entry.position,
                "session_id": entry.session_id,
                "user_id": entry.username,
                "lane": entry.lane,
                "waiting_since": entry.waiting_since,
                "connected": entry.connected,
                "eta_seconds": entry.eta_seconds,
            }
            for entry in selectors.queue_entries(limit)
        ]
    return JsonResponse(body)


def gate_cleanup(request: HttpRequest) -> HttpResponse:
    caller = authenticate(request, write=True)
    if not caller.may_sweep:
        raise forbidden("Only staff and service tokens may run the cleanup.")
    result = services.sessions_sweep()
    return JsonResponse(
        {
            "expired": len(result.expired),
            "abandoned": len(result.abandoned),
            "promoted": len(result.promoted),
            "reclaimed_leases": result.reclaimed,
        }
    )


def openapi(request: HttpRequest) -> HttpResponse:
    return JsonResponse(openapi_document(request.build_absolute_uri("/api/v1")))


@csrf_exempt
@json_view
def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise not_found(f"No API endpoint at {request.path}; see /api/v1/openapi.json.")


create_view = pooled(endpoint(POST=session_create))
close_view = pooled(endpoint(DELETE=session_close))
position_view = pooled(endpoint(GET=session_position))
status_view = pooled(endpoint(GET=gate_status))
cleanup_view = pooled(endpoint(POST=gate_cleanup))
openapi_view = endpoint(GET=openapi)
