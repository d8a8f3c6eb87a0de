"""URLs of the gate, gathered from each surface's own module so each can change alone."""

from django.urls import include, path

from sessions_app.views import chat, health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include("sessions_app.api.urls")),
    path("console/", include("sessions_app.console.urls")),
    path("", include(chat.urlpatterns)),
]
