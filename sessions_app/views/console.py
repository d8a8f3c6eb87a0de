"""The staff console (issue 4 fills this in)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache

from sessions_app import selectors


@never_cache
@staff_member_required
def console_home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "sessions_app/console.html",
        {"snapshot": selectors.gate_snapshot(), "queue": selectors.queue_entries(50)},
    )


urlpatterns = [path("", console_home, name="console")]
