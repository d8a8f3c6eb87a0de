"""Django admin: the durable record, browsable; its actions call the same services as the console.

Sessions are never edited by hand (Redis is the live truth; services keep the record in step),
so their pages are read-only and change only through the actions, which need the
`steer_gate` permission and confirm first. Messages and the audit log are read-only. Saving
the gate settings goes through `services.limits_set`, so it is validated, audited and pushed
to Redis exactly as a console change is.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from sessions_app import exports
from sessions_app.admin_base import ReadOnlyAdmin, SingleRowSettingsAdmin, TitledAdmin
from sessions_app.alerts import alert_thresholds_set
from sessions_app.api.auth import token_cache_forget
from sessions_app.chat import admin as chat_admin  # noqa: F401  (conversations, messages)
from sessions_app.chat import attachments_admin  # noqa: F401  (attachments)
from sessions_app.forms import CloseForm
from sessions_app.gate import services
from sessions_app.models import (
    Alert,
    AlertSettings,
    ApiToken,
    AuditEvent,
    ChatSession,
    GateSettings,
)

admin.site.site_header = gettext_lazy("chatgate administration")
admin.site.site_title = gettext_lazy("chatgate")
admin.site.index_title = gettext_lazy("Gate records and settings")


def _csv_response(name: str) -> HttpResponse:
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="chatgate-{name}-{stamp}.csv"'
    response.write("\ufeff")  # a BOM, so that spreadsheet programs read Hangul as UTF-8
    return response


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnlyAdmin):
    list_display = (
        "short_id",
        "user",
        "state",
        "lane",
        "opened_via",
        "created_at",
        "activated_at",
        "closed_at",
        "close_reason",
        "admitted_over_limit",
    )
    list_filter = ("state", "close_reason", "lane", "opened_via", "admitted_over_limit")
    search_fields = ("user__username", "user__email", "user__first_name", "user__last_name")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    readonly_fields = ("console_link",)
    actions = ["force_close", "admit_now", "move_to_front", "export_csv"]

    @admin.action(description=gettext_lazy("Export the selected sessions as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> HttpResponse:
        response = _csv_response("sessions")
        exports.sessions_csv(queryset.order_by("created_at"), response)
        return response

    @admin.display(description=gettext_lazy("session"), ordering="id")
    def short_id(self, obj: ChatSession) -> str:
        return str(obj.pk)[:8]

    @admin.display(description=gettext_lazy("console"))
    def console_link(self, obj: ChatSession) -> str:
        if obj.state == ChatSession.State.ACTIVE:
            return format_html(
                '<a href="{}">{}</a> · <a href="{}">{}</a>',
                reverse("console"),
                _("Open the gate console"),
                reverse("console-close", args=[obj.pk]),
                _("Force-close…"),
            )
        if obj.state == ChatSession.State.QUEUED:
            return format_html(
                '<a href="{}">{}</a> · <a href="{}">{}</a> · <a href="{}">{}</a>',
                reverse("console"),
                _("Open the gate console"),
                reverse("console-admit", args=[obj.pk]),
                _("Admit now…"),
                reverse("console-front", args=[obj.pk]),
                _("Move to front…"),
            )
        return format_html('<a href="{}">{}</a>', reverse("console"), _("Open the gate console"))

    def has_steer_gate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sessions_app.steer_gate"))

    def _confirm(
        self,
        request: HttpRequest,
        queryset: QuerySet[ChatSession],
        *,
        action: str,
        title: str,
        question: str,
        button: str,
        form: forms.Form | None = None,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "question": question,
            "button": button,
            "form": form,
            "sessions": queryset,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/sessions_app/chatsession/action_confirmation.html", context
        )

    @admin.action(
        description=gettext_lazy("Force-close the selected live sessions…"),
        permissions=["steer_gate"],
    )
    def force_close(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> TemplateResponse | None:
        live = queryset.exclude(state=ChatSession.State.CLOSED).select_related("user")
        form = CloseForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if request.POST.get("confirm") == "yes" and form.is_valid():
            closed = 0
            for session in live:
                result = services.session_close(
                    session_id=str(session.pk),
                    reason=ChatSession.Reason.ADMIN,
                    actor=request.user,
                    note=form.cleaned_data["note"].strip(),
                )
                closed += int(result.closed)
            self.message_user(
                request, _("%(n)d session(s) closed.") % {"n": closed}, messages.SUCCESS
            )
            return None
        return self._confirm(
            request,
            live,
            action="force_close",
            title=_("Force-close sessions"),
            question=_("Close these sessions now? The reason below is shown to each person."),
            button=_("Close sessions"),
            form=form,
        )

    def _promote(
        self, request: HttpRequest, queryset: QuerySet[ChatSession], how: str
    ) -> TemplateResponse | None:
        # Oldest ticket last when moving to the front, so the selection keeps its own order.
        queued = queryset.filter(state=ChatSession.State.QUEUED).select_related("user")
        ordered = queued.order_by("-ticket" if how == "front" else "ticket")
        if request.POST.get("confirm") == "yes":
            done = over = 0
            for session in ordered:
                result = services.session_promote(
                    session_id=str(session.pk), how=how, actor=request.user
                )
                done += int(result.outcome != "not_queued")
                over += int(result.over_limit)
            text = _("%(n)d session(s) promoted.") % {"n": done}
            if over:
                text += " " + _("%(n)d admitted over the limit.") % {"n": over}
            self.message_user(request, text, messages.SUCCESS)
            return None
        if how == "admit":
            return self._confirm(
                request,
                ordered,
                action="admit_now",
                title=_("Admit now"),
                question=_(
                    "Admit these people now? When all seats are taken they are admitted over "
                    "the limit, and labelled so."
                ),
                button=_("Admit now"),
            )
        return self._confirm(
            request,
            ordered,
            action="move_to_front",
            title=_("Move to the front"),
            question=_("Move these people to the front of the queue?"),
            button=_("Move to the front"),
        )

    @admin.action(
        description=gettext_lazy("Admit the selected queued people now…"),
        permissions=["steer_gate"],
    )
    def admit_now(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> TemplateResponse | None:
        return self._promote(request, queryset, "admit")

    @admin.action(
        description=gettext_lazy("Move the selected queued people to the front…"),
        permissions=["steer_gate"],
    )
    def move_to_front(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> TemplateResponse | None:
        return self._promote(request, queryset, "front")


class GateSettingsForm(forms.ModelForm):
    class Meta:
        model = GateSettings
        fields = GateSettings.EDITABLE_FIELDS


@admin.register(GateSettings)
class GateSettingsAdmin(SingleRowSettingsAdmin):
    form = GateSettingsForm
    list_display = (
        "__str__",
        "max_active_sessions",
        "max_concurrent_queries",
        "admissions_paused",
        "updated_at",
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if not changes:
            return
        try:
            services.limits_set(actor=request.user, **changes)
        except ValidationError as exc:  # the form checked the same bounds; a race is possible
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "action", "target", "detail")
    list_filter = ("action",)
    search_fields = ("actor_label", "target", "action")
    date_hierarchy = "created_at"
    actions = ["export_csv"]

    @admin.action(description=gettext_lazy("Export the selected audit events as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> HttpResponse:
        response = _csv_response("audit")
        exports.audit_csv(queryset.order_by("created_at"), response)
        return response


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("kind", "since", "raised_at", "resolved_at", "value", "threshold")
    list_filter = ("kind",)
    date_hierarchy = "since"


@admin.register(AlertSettings)
class AlertSettingsAdmin(SingleRowSettingsAdmin):
    fields = AlertSettings.EDITABLE_FIELDS

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if changes:  # through the service: validated and audited like the console's form
            alert_thresholds_set(actor=request.user, **changes)


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("name", "owner", "can_act_for_users")


@admin.register(ApiToken)
class ApiTokenAdmin(TitledAdmin):
    list_display = (
        "name",
        "owner",
        "prefix",
        "can_act_for_users",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("can_act_for_users",)
    search_fields = ("name", "owner__username", "prefix")
    raw_id_fields = ("owner",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):  # type: ignore[no-untyped-def]
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
            kwargs["fields"] = ApiTokenAddForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # An issued token's powers never change silently: to widen them, issue a new token
        # (audited) and revoke the old one (audited).
        if obj is not None:
            return ("name", "owner", "can_act_for_users", *self.readonly_fields)
        return ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return  # nothing on an issued token is editable (see get_readonly_fields)
        row, raw = ApiToken.issue(
            name=form.cleaned_data["name"],
            owner=form.cleaned_data["owner"],
            can_act_for_users=form.cleaned_data["can_act_for_users"],
        )
        obj.pk = row.pk  # the admin's redirect and log entry point at the issued row
        services.audit(
            actor=request.user,
            action="token.issue",
            target=row.name,
            detail={"prefix": row.prefix, "can_act_for_users": row.can_act_for_users},
        )
        self.message_user(
            request,
            _("Token issued. Copy it now, it is not shown again and only its hash is kept: %(t)s")
            % {"t": raw},
            messages.WARNING,
        )

    @admin.action(description=gettext_lazy("Revoke the selected tokens"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        live = list(queryset.filter(revoked_at__isnull=True))
        queryset.filter(pk__in=[t.pk for t in live]).update(revoked_at=timezone.now())
        token_cache_forget()  # this process stops accepting them at once (api/auth.py)
        for token in live:
            services.audit(actor=request.user, action="token.revoke", target=token.name)
        self.message_user(request, _("%(n)d token(s) revoked.") % {"n": len(live)})
