"""Routes of the JSON API, mounted at /api/v1/. Anything else under it is a JSON 404."""

from django.urls import path, re_path

from sessions_app.api import views

app_name = "api"

urlpatterns = [
    path("session/create", views.create_view, name="session-create"),
    path("session/close/<str:user_id>", views.close_view, name="session-close"),
    path("session/status", views.status_view, name="session-status"),
    path("session/position/<str:user_id>", views.position_view, name="session-position"),
    path("session/cleanup", views.cleanup_view, name="session-cleanup"),
    path("openapi.json", views.openapi_view, name="openapi"),
    re_path(r"^(?P<rest>.*)$", views.unknown),
]
