"""Find a person: search by username, name or e-mail; see their live state, act, and read
their recent sessions and how each ended.

The live state comes from Redis (`selectors.session_status_for_user`, the same answer the
person's own page gets); the history from the SQL record. The actions are the queue's and the
active table's own links, so they confirm and audit exactly as there.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from sessions_app.console.views import _action_urls, _page, _record_url, can_steer, staff_view
from sessions_app.gate import selectors
from sessions_app.gate.admission import GateUnavailable
from sessions_app.models import ChatSession

MAX_PEOPLE = 20
RECENT_SESSIONS = 10
MAX_QUERY = 150


def people_search(query: str, *, limit: int = MAX_PEOPLE) -> list[Any]:
    """People whose username, first or last name, or e-mail contains the query."""
    query = query.strip()[:MAX_QUERY]
    if not query:
        return []
    condition = (
        Q(username__icontains=query)
        | Q(first_name__icontains=query)
        | Q(last_name__icontains=query)
        | Q(email__icontains=query)
    )
    return list(get_user_model().objects.filter(condition).order_by("username")[:limit])


def person_card(user: Any) -> dict[str, Any]:
    """One person as the console shows them: live state, actions, recent sessions."""
    try:
        status = selectors.session_status_for_user(user)
        live: str | None = status.state
    except GateUnavailable:
        status, live = None, None
    actions: dict[str, str] = {}
    if status is not None and status.session_id and live == "queued":
        actions = _action_urls(status.session_id, ("admit", "front", "remove"))
    elif status is not None and status.session_id and live == "active":
        actions = _action_urls(status.session_id, ("close",))
    recent = [
        {"session": session, "record": _record_url(str(session.pk))}
        for session in ChatSession.objects.filter(user=user).order_by("-created_at")[
            :RECENT_SESSIONS
        ]
    ]
    return {"user": user, "status": status, "live": live, "actions": actions, "recent": recent}


@staff_view()
@require_GET
def people_find(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:MAX_QUERY]
    people = people_search(query)
    return _page(
        request,
        "sessions_app/console_people.html",
        {
            "title": _("Find a person"),
            "query": query,
            "cards": [person_card(user) for user in people],
            "more": len(people) >= MAX_PEOPLE,
            "can_steer": can_steer(request.user),
        },
    )
