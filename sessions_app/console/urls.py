"""The console's URLs, gathered from its page modules."""

from django.urls import path

from sessions_app.console import alerts_views, people, settings_views
from sessions_app.console.views import (
    admissions_pause,
    console_home,
    console_live,
    session_close,
    session_promote,
)

urlpatterns = [
    path("", console_home, name="console"),
    path("live.json", console_live, name="console-live"),
    path("session/<uuid:session_id>/close/", session_close, name="console-close"),
    path(
        "session/<uuid:session_id>/remove/",
        session_close,
        {"remove": True},
        name="console-remove",
    ),
    path(
        "session/<uuid:session_id>/admit/",
        session_promote,
        {"how": "admit"},
        name="console-admit",
    ),
    path(
        "session/<uuid:session_id>/front/",
        session_promote,
        {"how": "front"},
        name="console-front",
    ),
    path("admissions/pause/", admissions_pause, {"paused": True}, name="console-pause"),
    path("admissions/resume/", admissions_pause, {"paused": False}, name="console-resume"),
    path("limits/", settings_views.limits_edit, name="console-limits"),
    path("banner/", settings_views.banner_edit, name="console-banner"),
    path("alerts/", alerts_views.alerts_edit, name="console-alerts"),
    path("people/", people.people_find, name="console-people"),
]
