"""The staff console: see the gate live and steer it, one person at a time.

Staff (`is_staff`) may look; acting needs the `sessions_app.steer_gate` permission (superusers
have it). Every action is GET confirm → POST act → message → redirect, and each POST calls one
service function, which writes the audit row. The page wears the admin's clothes (it extends
`admin/base_site.html` with `admin_site.each_context`), and `console_live.ConsoleConsumer`
pushes the same fragments this module renders, so the first paint and the live updates can
never disagree.
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from sessions_app import metrics
from sessions_app.alerts import alert_text, alerts_raised
from sessions_app.console import charts
from sessions_app.forms import CloseForm
from sessions_app.gate import selectors, services
from sessions_app.gate.admission import GateUnavailable, get_manager
from sessions_app.models import AuditEvent, ChatSession

# The queue can hold thousands; the console shows its head (the count says how many more).
QUEUE_ROWS = 50
AUDIT_ROWS = 20
FRAGMENTS = ("gauges", "active", "queue", "audit")


def can_steer(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm("sessions_app.steer_gate"))


def staff_view(*, steer: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Staff only: the login page for a person not logged in, 403 for everybody else."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not (user.is_active and user.is_staff):
                raise PermissionDenied(_("The console is for staff."))
            if steer and not can_steer(user):
                raise PermissionDenied(_("Steering the gate needs the steer_gate permission."))
            return view(request, *args, **kwargs)

        return never_cache(wrapper)

    return decorate


# --- what the console shows -------------------------------------------------------------------


def _when(epoch: float | None) -> datetime | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.get_current_timezone())


def duration(seconds: float | None) -> str:
    """3 s, 4 min 05 s, 2 h 03 min: short enough for a table cell."""
    if seconds is None:
        return "–"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return _("%(m)d min %(s)02d s") % {"m": minutes, "s": secs}
    hours, minutes = divmod(minutes, 60)
    return _("%(h)d h %(m)02d min") % {"h": hours, "m": minutes}


def audit_recent(limit: int) -> list[AuditEvent]:
    """The newest staff actions, newest first (the admin keeps the full log)."""
    return list(AuditEvent.objects.select_related("actor").order_by("-created_at")[:limit])


def audit_summary(detail: dict[str, Any]) -> str:
    """`max_active_sessions: 20 → 1` for limit changes; `key: value; ...` for the rest."""
    before, after = detail.get("before"), detail.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        return "; ".join(f"{k}: {before.get(k)!s} → {v!s}" for k, v in after.items())
    return "; ".join(f"{k}: {v!s}" for k, v in detail.items() if v not in ("", None))


_URL_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def _action_urls(session_id: str, names: tuple[str, ...]) -> dict[str, str]:
    """Row links without a reverse() per row and action (the queue shows fifty rows)."""
    patterns = _action_patterns()
    return {name: patterns[name].replace(_URL_PLACEHOLDER, session_id) for name in names}


def _record_url(session_id: str) -> str:
    """The session's page in the admin (its durable record and messages)."""
    return _action_patterns()["record"].replace(_URL_PLACEHOLDER, session_id)


@functools.cache
def _action_patterns() -> dict[str, str]:
    patterns = {
        name: reverse(f"console-{name}", args=[_URL_PLACEHOLDER])
        for name in ("close", "remove", "admit", "front")
    }
    patterns["record"] = reverse("admin:sessions_app_chatsession_change", args=[_URL_PLACEHOLDER])
    return patterns


def audit_rows(events: list[AuditEvent]) -> list[dict[str, Any]]:
    """Audit events with "to whom" spelled out: a session target shows its person's name."""
    session_ids = set()
    for event in events:
        with contextlib.suppress(ValueError):
            session_ids.add(uuid.UUID(event.target))
    people = {
        str(sid): name
        for sid, name in ChatSession.objects.filter(id__in=session_ids).values_list(
            "id", "user__username"
        )
    }
    rows = []
    for event in events:
        person = people.get(event.target)
        target = f"{person} ({event.target[:8]})" if person else event.target
        rows.append(
            {"event": event, "target": target, "summary": audit_summary(event.detail or {})}
        )
    return rows


def endpoint_choice(value: str | None) -> str | None:
    """The endpoint filter of the charts: a route label that has served requests, else none
    (a filter is only ever one of the bounded labels, never free text)."""
    if not value:
        return None
    return value if value in metrics.endpoint_routes() else None


def console_state(
    *, user: Any, with_charts: bool = True, endpoint: str | None = None
) -> dict[str, Any]:
    """Everything the console renders, read once (Redis for the live state, SQL for names)."""
    snapshot = selectors.gate_snapshot()
    manager = get_manager()
    now = manager.server_time()
    metrics.gauges_sample(active=snapshot.active, queued=snapshot.queued, manager=manager)
    metrics.waits_fold(manager)  # keeps the /metrics wait histogram whole between scrapes
    active_rows = [
        {
            "entry": entry,
            "since": _when(entry.activated),
            "last_activity": _when(entry.last_activity),
            "idle_for": duration(entry.idle_for),
            "urls": _action_urls(entry.session_id, ("close",)),
            "record": _record_url(entry.session_id),
        }
        for entry in sorted(selectors.active_entries(), key=lambda e: e.activated or 0)
    ]
    queue_rows = [
        {
            "entry": entry,
            "since": _when(entry.waiting_since),
            "waited": duration(now - entry.waiting_since),
            "eta": duration(entry.eta_seconds) if entry.eta_seconds is not None else "–",
            "urls": _action_urls(entry.session_id, ("admit", "front", "remove")),
            "record": _record_url(entry.session_id),
        }
        for entry in selectors.queue_entries(QUEUE_ROWS)
    ]
    waits = metrics.wait_stats(manager=manager)
    state: dict[str, Any] = {
        "snapshot": snapshot,
        "active_rows": active_rows,
        "queue_rows": queue_rows,
        "queue_more": max(snapshot.queued - len(queue_rows), 0),
        "over_limit": snapshot.active > snapshot.max_active_sessions,
        "wait_p50": duration(waits.p50) if waits.p50 is not None else "–",
        "wait_p90": duration(waits.p90) if waits.p90 is not None else "–",
        "wait_count": waits.count,
        "audit": audit_rows(audit_recent(AUDIT_ROWS)),
        "alerts": [{"alert": a, "text": alert_text(a)} for a in alerts_raised()],
        "can_steer": can_steer(user),
        "generated_at": _when(now),
    }
    if with_charts:
        series = metrics.minute_series(minutes=60, now=time.time(), manager=manager)
        requests = series
        if endpoint:
            requests = metrics.minute_series(
                minutes=60, now=time.time(), endpoint=endpoint, manager=manager
            )
        state["endpoints"] = metrics.endpoint_routes(manager)
        state["endpoint"] = endpoint or ""
        state["charts"] = [
            charts.sessions_chart(series),
            charts.requests_chart(requests, endpoint),
            charts.latency_chart(requests, endpoint),
            charts.wait_distribution_chart(waits.waits, now=now),
        ]
    return state


def render_fragments(
    *, user: Any, with_charts: bool = True, endpoint: str | None = None
) -> dict[str, str]:
    """The console's live parts as HTML, keyed by the id of the element each one replaces."""
    state = console_state(user=user, with_charts=with_charts, endpoint=endpoint)
    parts: dict[str, str] = {
        name: render_to_string(f"sessions_app/console_{name}.html", state) for name in FRAGMENTS
    }
    if with_charts:
        parts["charts"] = render_to_string("sessions_app/console_charts.html", state)
    return parts


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> Any:
    # The admin's model sidebar lists nothing a console user needs; the page wants the width.
    full = {**admin.site.each_context(request), "is_nav_sidebar_enabled": False, **context}
    return render(request, template, full, status=status)


@staff_view()
@require_GET
def console_home(request: HttpRequest) -> HttpResponse:
    try:
        fragments = render_fragments(
            user=request.user, endpoint=endpoint_choice(request.GET.get("endpoint"))
        )
    except GateUnavailable as exc:
        return _page(
            request,
            "sessions_app/console_unavailable.html",
            {"title": _("Console"), "detail": str(exc)},
            status=503,
        )
    return _page(
        request,
        "sessions_app/console.html",
        {"title": _("Gate console"), "fragments": fragments, "can_steer": can_steer(request.user)},
    )


@never_cache
@require_GET
def console_live(request: HttpRequest) -> JsonResponse:
    """The same fragments as JSON: the page polls this when WebSockets are blocked."""
    user = request.user
    if not user.is_authenticated:
        return JsonResponse(
            {"error": {"code": "not_authenticated", "message": "Log in first."}}, status=401
        )
    if not (user.is_active and user.is_staff):
        return JsonResponse(
            {"error": {"code": "forbidden", "message": "The console is for staff."}}, status=403
        )
    try:
        fragments = render_fragments(
            user=user, endpoint=endpoint_choice(request.GET.get("endpoint"))
        )
    except GateUnavailable as exc:
        response = JsonResponse({"error": {"code": "unavailable", "message": str(exc)}}, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"type": "console.update", "fragments": fragments})


# --- acting -----------------------------------------------------------------------------------


def _session_or_404(session_id: Any) -> ChatSession:
    from django.shortcuts import get_object_or_404

    return get_object_or_404(ChatSession.objects.select_related("user"), pk=session_id)


def _live_state(session_id: str) -> str:
    info = get_manager().session_info(session_id)
    return info.state if info else "closed"


def _confirm(
    request: HttpRequest,
    *,
    title: str,
    question: str,
    button: str,
    danger: bool = False,
    details: list[tuple[str, Any]] | None = None,
    form: forms.Form | None = None,
    status: int = 200,
) -> HttpResponse:
    return _page(
        request,
        "sessions_app/console_confirm.html",
        {
            "title": title,
            "question": question,
            "button": button,
            "danger": danger,
            "details": details or [],
            "form": form,
        },
        status=status,
    )


def _session_details(session: ChatSession, live: str) -> list[tuple[str, Any]]:
    return [
        (_("Person"), session.user.get_username()),
        (_("Live state"), live),
        (_("Lane"), session.get_lane_display()),
        (_("Opened"), session.created_at),
        (_("Session"), str(session.pk)),
    ]


@staff_view(steer=True)
@require_http_methods(["GET", "POST"])
def session_close(request: HttpRequest, session_id: Any, *, remove: bool = False) -> HttpResponse:
    """Force-close an active session, or remove a person from the queue (reason "admin")."""
    session = _session_or_404(session_id)
    live = _live_state(str(session.pk))
    form = CloseForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        note = form.cleaned_data["note"].strip()
        who = session.user.get_username()
        # "Remove" acts only on someone still queued (checked and done in one script), so a
        # person promoted since the confirmation page was shown is not closed by mistake.
        result = services.session_close(
            session_id=str(session.pk),
            reason=ChatSession.Reason.ADMIN,
            actor=request.user,
            note=note,
            only_if_state="queued" if remove else "",
        )
        if result.refused_state == "active":
            messages.warning(
                request,
                _("%(who)s was promoted meanwhile and is chatting now; nothing was changed.")
                % {"who": who},
            )
        elif not result.closed:
            messages.warning(request, _("%(who)s's session was no longer live.") % {"who": who})
        elif result.previous_state == "queued":
            messages.success(request, _("%(who)s was removed from the queue.") % {"who": who})
        else:
            messages.success(request, _("%(who)s's session was closed.") % {"who": who})
        if result.promoted:
            messages.info(
                request,
                _("%(n)d person(s) promoted into the freed seat(s).") % {"n": len(result.promoted)},
            )
        return redirect("console")
    if remove:
        title = _("Remove from the queue")
        question = _("Remove %(who)s from the queue? Their place is given up.") % {
            "who": session.user.get_username()
        }
    else:
        title = _("Force-close a session")
        question = _("Close %(who)s's session now? The reason below is shown to them.") % {
            "who": session.user.get_username()
        }
    return _confirm(
        request,
        title=title,
        question=question,
        button=_("Remove") if remove else _("Close session"),
        danger=True,
        details=_session_details(session, live),
        form=form,
        status=400 if request.method == "POST" else 200,
    )


@staff_view(steer=True)
@require_http_methods(["GET", "POST"])
def session_promote(request: HttpRequest, session_id: Any, how: str) -> HttpResponse:
    """Admit now (even above the limit, labelled as such) or move to the front of the queue."""
    session = _session_or_404(session_id)
    who = session.user.get_username()
    if request.method == "POST":
        result = services.session_promote(session_id=str(session.pk), how=how, actor=request.user)
        if result.outcome == "not_queued":
            messages.warning(request, _("%(who)s is not in the queue any more.") % {"who": who})
        elif result.outcome == "admitted" and result.over_limit:
            messages.success(request, _("%(who)s was admitted now, over the limit.") % {"who": who})
        elif result.outcome == "admitted":
            messages.success(request, _("%(who)s was admitted now.") % {"who": who})
        else:
            messages.success(request, _("%(who)s was moved to the front.") % {"who": who})
        return redirect("console")
    snapshot = selectors.gate_snapshot()
    details = _session_details(session, _live_state(str(session.pk)))
    details.insert(1, (_("Place in the queue"), get_manager().position(str(session.pk)) or "–"))
    if how == "admit":
        over = snapshot.active >= snapshot.max_active_sessions
        question = _("Admit %(who)s now?") % {"who": who}
        if over:
            question += " " + _(
                "All %(limit)d seats are taken: this admits them over the limit "
                "(%(after)d active afterwards)."
            ) % {"limit": snapshot.max_active_sessions, "after": snapshot.active + 1}
        return _confirm(
            request,
            title=_("Admit now"),
            question=question,
            button=_("Admit over the limit") if over else _("Admit now"),
            danger=over,
            details=details,
        )
    return _confirm(
        request,
        title=_("Move to the front"),
        question=_("Move %(who)s to the front of the queue?") % {"who": who},
        button=_("Move to the front"),
        details=details,
    )


@staff_view(steer=True)
@require_http_methods(["GET", "POST"])
def admissions_pause(request: HttpRequest, *, paused: bool) -> HttpResponse:
    """Pause admissions (drain: nobody new becomes active, the queue keeps forming) or resume."""
    if request.method == "POST":
        services.limits_set(actor=request.user, admissions_paused=paused)
        if paused:
            messages.success(request, _("Admissions are paused; the queue keeps forming."))
        else:
            messages.success(request, _("Admissions resumed; free seats are filled at once."))
        return redirect("console")
    snapshot = selectors.gate_snapshot()
    details = [
        (_("Active"), f"{snapshot.active} / {snapshot.max_active_sessions}"),
        (_("Queued"), snapshot.queued),
    ]
    if paused:
        return _confirm(
            request,
            title=_("Pause admissions"),
            question=_(
                "Pause admissions? Active sessions continue; nobody new becomes active until "
                "you resume, and the queue keeps forming."
            ),
            button=_("Pause admissions"),
            danger=True,
            details=details,
        )
    return _confirm(
        request,
        title=_("Resume admissions"),
        question=_("Resume admissions? Free seats are filled from the head of the queue at once."),
        button=_("Resume admissions"),
        details=details,
    )
