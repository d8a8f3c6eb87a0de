"""The people's chat page (`/`, and `/c/<uuid>/` with one conversation open), the landing after
login (staff go to the console), and the page's small JSON fallback for blocked WebSockets.

The page itself only reads: the socket opens or resumes the session the moment it connects.
When WebSockets cannot connect at all, the page opens its session with `POST /chat/session`,
polls `GET /chat/status` every 5 s (which counts as a page being open, so the place is kept),
and leaves with `POST /chat/leave`. The three answer JSON and never redirect to a login page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from sessions_app import conf, fanout
from sessions_app.chat.conversations import ConversationNotFound, conversation_get
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


def _page(request: HttpRequest, conversation: Any) -> HttpResponse:
    unavailable = False
    try:
        selectors.session_status_for_user(request.user)
    except GateUnavailable:
        unavailable = True
    return render(
        request,
        "sessions_app/chat.html",
        {
            "conversation": conversation,
            "strings": page_strings(),
            "max_message_chars": int(conf.get("MAX_MESSAGE_CHARS")),
            "max_upload_bytes": int(conf.get("MAX_UPLOAD_BYTES")),
            "is_staff": request.user.is_staff,
            "unavailable": unavailable,
            # Read only: load() would create the record and push its limits as a side effect.
            "banner_message": GateSettings.objects.filter(pk=1)
            .values_list("banner_message", flat=True)
            .first()
            or "",
        },
    )


@login_required
@never_cache
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """No conversation open: the first message creates one."""
    return _page(request, None)


@login_required
@never_cache
@require_GET
def conversation_page(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    try:
        conversation = conversation_get(owner=request.user, conversation_id=conversation_id)
    except ConversationNotFound:
        raise Http404(_("There is no such conversation.")) from None
    return _page(request, conversation)


@login_required
@require_GET
def after_login(request: HttpRequest) -> HttpResponse:
    """Where a login without `next` lands: staff on the console (they come to steer, not to
    queue), everyone else on the chat page, which is one link away from the console."""
    return redirect("console" if request.user.is_staff else "chat")


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
    path("c/<uuid:conversation_id>/", conversation_page, name="chat-conversation"),
    path("welcome", after_login, name="after-login"),
    path("chat/status", chat_status, name="chat-status"),
    path("chat/session", chat_session, name="chat-session"),
    path("chat/leave", chat_leave, name="chat-leave"),
]
