"""The console's settings pages: the live limits, the banner people see, the alert thresholds.

Each is a form whose POST calls one service (`limits_set`, `alert_thresholds_set`), which
validates and writes the audit row; the page only parses and reports.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from sessions_app import conf
from sessions_app.console.views import _page, staff_view
from sessions_app.gate import services
from sessions_app.models import GateSettings

LIMIT_LABELS = {
    "max_active_sessions": gettext_lazy("Max active sessions"),
    "max_concurrent_queries": gettext_lazy("Max generating queries"),
    "idle_timeout_seconds": gettext_lazy("Idle timeout (seconds)"),
    "disconnect_grace_seconds": gettext_lazy("Disconnect grace (seconds)"),
    "query_wait_timeout_seconds": gettext_lazy("Query wait limit (seconds)"),
}


class LimitsForm(forms.Form):
    """Parses numbers only; the bounds are checked by the service (GateSettings.full_clean)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in LIMIT_LABELS.items():
            low, high = conf.LIMIT_BOUNDS[name]
            self.fields[name] = forms.IntegerField(
                label=label,
                help_text=_("From %(low)s to %(high)s.") % {"low": low, "high": high},
                widget=forms.NumberInput(attrs={"min": low, "max": high}),
            )


@staff_view(steer=True)
@require_http_methods(["GET", "POST"])
def limits_edit(request: HttpRequest) -> HttpResponse:
    gate = GateSettings.load()
    current = {name: getattr(gate, name) for name in LIMIT_LABELS}
    form = LimitsForm(request.POST if request.method == "POST" else None, initial=current)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if v != current[k]}
        if not changes:
            messages.info(request, _("The limits were not changed."))
            return redirect("console")
        try:
            services.limits_set(actor=request.user, **changes)
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc)
        else:
            summary = ", ".join(
                f"{LIMIT_LABELS[k]}: {current[k]} → {v}" for k, v in changes.items()
            )
            messages.success(request, _("Limits changed (%(summary)s).") % {"summary": summary})
            return redirect("console")
    return _page(
        request,
        "sessions_app/console_form.html",
        {
            "title": _("Change limits"),
            "intro": _(
                "Changes apply at once. Raising the active limit admits the queue's head "
                "immediately; lowering it evicts nobody, it only holds promotions back."
            ),
            "form": form,
            "button": _("Save limits"),
        },
        status=400 if request.method == "POST" else 200,
    )


class BannerForm(forms.Form):
    banner_message = forms.CharField(
        label=gettext_lazy("Banner shown to everyone waiting"),
        max_length=300,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=gettext_lazy("Leave empty to remove the banner."),
    )


@staff_view(steer=True)
@require_http_methods(["GET", "POST"])
def banner_edit(request: HttpRequest) -> HttpResponse:
    gate = GateSettings.load()
    form = BannerForm(
        request.POST if request.method == "POST" else None,
        initial={"banner_message": gate.banner_message},
    )
    if request.method == "POST" and form.is_valid():
        message = form.cleaned_data["banner_message"].strip()
        services.limits_set(actor=request.user, banner_message=message)
        if message:
            messages.success(request, _("The banner is shown to everyone waiting."))
        else:
            messages.success(request, _("The banner was removed."))
        return redirect("console")
    return _page(
        request,
        "sessions_app/console_form.html",
        {
            "title": _("Banner message"),
            "intro": _("Shown at once on the page of everyone waiting, and to people who arrive."),
            "form": form,
            "button": _("Save banner"),
        },
        status=400 if request.method == "POST" else 200,
    )
