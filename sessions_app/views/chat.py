"""The people's chat page (issue 3 fills this in)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


@login_required
def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "sessions_app/chat.html", {})


urlpatterns = [path("", chat_page, name="chat")]
