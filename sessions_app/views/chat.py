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
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from sessions_app import fanout
from sessions_app.gate import selectors, services
from sessions_app.gate.admission import GateUnavailable
from sessions_app.models import ChatSession, GateSettings

# Retry-After for the fallback while Redis is unreachable.
UNAVAILABLE_RETRY_SECONDS = 5


def page_strings() -> dict[str, str]:
    """Every sentence chat.js shows, translated here so the page needs no JS catalogue.

    Placeholders are %(name)s; the page fills them in.
    """
    return {
        "connecting": _("Connecting…"),
        "queued_title": _("You are number %(position)s"),
        "eta_one": _("about 1 minute"),
        "eta_other": _("about %(minutes)s minutes"),
        "eta_unknown": _("waiting time unknown"),
        "ahead_zero": _("You are next in line."),
        # ngettext with a placeholder: the page picks _one or _other.
        "ahead_one": ngettext("%(ahead)s person ahead of you", "%(ahead)s people ahead of you", 1),
        "ahead_other": ngettext(
            "%(ahead)s person ahead of you", "%(ahead)s people ahead of you", 2
        ),
        "title_queue": _("#%(position)s in line · chatgate"),
        "your_turn": _("It's your turn"),
        "your_turn_detail": _("You can chat now."),
        "title_turn": _("Your turn! · chatgate"),
        "notification_body": _("It's your turn to chat."),
        "notify_me": _("Notify me when it's my turn"),
        "active_title": _("Chat · chatgate"),
        "expiring": _("Still there? Your session ends in %(seconds)s seconds unless you keep it."),
        "ended": _("Your session has ended: %(reason)s"),
        "ended_title": _("Session ended · chatgate"),
        "reason_user": _("you left."),
        "reason_expired": _("it was idle for too long."),
        "reason_abandoned": _("no page was open for a while."),
        "reason_admin": _("staff closed it."),
        "reason_lost": _("it was lost after a service restart."),
        "reconnecting": _("Connection lost. Reconnecting in %(seconds)s s…"),
        "live": _("Live"),
        "polling": _(
            "Live updates are blocked on this network: your place is checked every 5 seconds. "
            "Chat needs a live connection."
        ),
        "unavailable": _("The service is briefly unavailable. Retrying…"),
        "waiting_slot": _("Your message is number %(place)s in line for a free answer slot."),
        "slot_lost": _("The answer may have been cut short."),
        "assistant_writing": _("The assistant is writing…"),
        "you": _("You"),
        "assistant": _("Assistant"),
        "stopped": _("(stopped)"),
        "failed": _("(failed)"),
        "err_RATE_LIMIT": _("You are sending messages too fast; try again in %(seconds)s s."),
        "err_TOO_LARGE": _("That message is too large."),
        "err_NOT_ACTIVE": _("You can chat once it is your turn."),
        "err_CAPACITY_TIMEOUT": _("All answer slots stayed busy; please send your message again."),
        "err_BACKEND_ERROR": _("The answer failed: %(message)s"),
        "err_BAD_REQUEST": _("The page sent something the server did not understand."),
        "err_UNAVAILABLE": _("The service is briefly unavailable. Retrying…"),
    }


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
