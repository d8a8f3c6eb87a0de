"""The console's alerts page: the thresholds staff set live, and the alerts of the last days.

Looking needs staff; changing the thresholds needs `steer_gate`, like every other lever.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from sessions_app.alerts import alert_text, alert_thresholds_set
from sessions_app.console.views import _page, can_steer, staff_view
from sessions_app.models import Alert, AlertSettings

RECENT_ALERTS = 30


class AlertSettingsForm(forms.ModelForm):
    class Meta:
        model = AlertSettings
        fields = AlertSettings.EDITABLE_FIELDS


@staff_view()
@require_http_methods(["GET", "POST"])
def alerts_edit(request: HttpRequest) -> HttpResponse:
    rules = AlertSettings.load()
    steer = can_steer(request.user)
    posted = request.method == "POST"
    if posted and not steer:
        raise PermissionDenied(_("Steering the gate needs the steer_gate permission."))
    form = AlertSettingsForm(request.POST if posted else None, instance=rules)
    if posted and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if not changes:
            messages.info(request, _("The alert thresholds were not changed."))
            return redirect("console-alerts")
        try:
            alert_thresholds_set(actor=request.user, **changes)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Alert thresholds saved; they apply within seconds."))
            return redirect("console-alerts")
    recent = [
        {"alert": alert, "text": alert_text(alert)}
        for alert in Alert.objects.filter(raised_at__isnull=False).order_by("-raised_at")[
            :RECENT_ALERTS
        ]
    ]
    return _page(
        request,
        "sessions_app/console_alerts.html",
        {
            "title": _("Alerts"),
            "form": form,
            "can_steer": steer,
            "recent": recent,
        },
        status=400 if posted else 200,
    )
