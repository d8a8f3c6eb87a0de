"""The people's chat page (`/`) and its small JSON fallback for networks that block WebSockets.

The page itself only reads: the socket opens or resumes the session the moment it connects.
When WebSockets cannot connect at all, the page opens its session with `POST /chat/session`,
polls `GET /chat/status` every 5 s (which counts as a page being open, so the place is kept),
and leaves with `POST /chat/leave`. The three answer JSON and never redirect to a login page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from sessions_app import fanout
from sessions_app.gate import selectors, services
from sessions_app.gate.admission import GateUnavailable
from sessions_app.models import ChatSession, GateSettings
from sessions_app.views.chat_strings import page_strings

# Retry-After for the fallback while Redis is unreachable.
UNAVAILABLE_RETRY_SECONDS = 5


def _json_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse(
                {"error": {"code": "UNAUTHENTICATED", "message": _("Log in first.")}}, status=401
            )
        try:
            return view(request, *args, **kwargs)
        except GateUnavailable:
            response = JsonResponse(
                {"error": {"code": "UNAVAILABLE", "message": str(page_strings()["unavailable"])}},
                status=503,
            )
            response["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
            return response

    return wrapper


def _status_json(session_id: str | None) -> JsonResponse:
    version = fanout.next_version()
    status = selectors.session_status(session_id)
    return JsonResponse({**status.as_dict(), "version": version})


@login_required
@never_cache
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    unavailable = False
    session_id = None
    try:
        status = selectors.session_status_for_user(request.user)
        session_id = status.session_id
    except GateUnavailable:
        unavailable = True
    history = selectors.chat_history(session_id) if session_id else []
    return render(
        request,
        "sessions_app/chat.html",
        {
            "history": history,
            "strings": page_strings(),
            "unavailable": unavailable,
            # Read only: load() would create the record and push its limits as a side effect.
            "banner_message": GateSettings.objects.filter(pk=1)
            .values_list("banner_message", flat=True)
            .first()
            or "",
        },
    )


@never_cache
@require_GET
@_json_login_required
def chat_status(request: HttpRequest) -> HttpResponse:
    """The person's status; a page polling it is a page being open (presence)."""
    session_id = services.session_live_for_user(request.user)
    if session_id:
        services.session_touch(session_id=session_id, kind="presence")
    return _status_json(session_id)


@never_cache
@require_POST
@_json_login_required
def chat_session(request: HttpRequest) -> HttpResponse:
    """Opens the person's session, or returns their live one (what the socket does on connect)."""
    outcome = services.session_open(user=request.user, via="page")
    return _status_json(outcome.session_id)


@never_cache
@require_POST
@_json_login_required
def chat_leave(request: HttpRequest) -> HttpResponse:
    session_id = services.session_live_for_user(request.user)
    if session_id:
        services.session_close(session_id=session_id, reason=ChatSession.Reason.USER)
    return JsonResponse({"state": "closed", "session_id": session_id})


urlpatterns = [
    path("", chat_page, name="chat"),
    path("chat/status", chat_status, name="chat-status"),
    path("chat/session", chat_session, name="chat-session"),
    path("chat/leave", chat_leave, name="chat-leave"),
]
